#pragma once
// ftfy.fixes, one function each, over UTF-8 text (std::string) or bytes.
// Names are ftfy's; each does what its Python namesake does (ftfy 6.3.1).
#include <string>

namespace spdit::text::ftfy_fixes {

/// badness.is_bad: whether the text has a sequence that looks like mojibake.
bool is_bad(const std::string& text);
/// chardata.possible_encoding(text, "ascii").
bool is_ascii(const std::string& text);
/// Whether chardata.UTF8_DETECTOR_RE finds a UTF-8-looking sequence.
bool has_utf8_clue(const std::string& text);
/// Whether chardata.ALTERED_UTF8_RE matches the bytes.
bool has_altered_utf8(const std::string& bytes);
/// Whether the text has a C1 control character (U+80..U+9F).
bool has_c1_control(const std::string& text);

std::string unescape_html(const std::string& text);
std::string remove_terminal_escapes(const std::string& text);
std::string uncurl_quotes(const std::string& text);
std::string fix_latin_ligatures(const std::string& text);
std::string fix_character_width(const std::string& text);
std::string fix_line_breaks(const std::string& text);
/// A no-op here: text that reached us as UTF-8 holds no surrogate code
/// points, which are all this fix changes.
std::string fix_surrogates(const std::string& text);
std::string remove_control_chars(const std::string& text);
std::string fix_c1_controls(const std::string& text);
/// unicodedata.normalize("NFC", text), through ICU.
std::string normalize_nfc(const std::string& text);

/// Python's html.unescape (not an ftfy fix: Wan's basic_clean runs it after
/// fix_text). Declared for users in spdit/text/ftfy.h.
std::string html_unescape(const std::string& text);

/// Bytes to bytes (the "transcode" steps of fix_encoding).
std::string restore_byte_a0(const std::string& bytes);
std::string replace_lossy_sequences(const std::string& bytes);

/// fixes.decode_inconsistent_utf8: fixes each UTF-8-looking stretch that is
/// bad on its own with fix_encoding (declared in ftfy_encoding.h).
std::string decode_inconsistent_utf8(const std::string& text);

}  // namespace spdit::text::ftfy_fixes
