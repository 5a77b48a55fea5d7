#pragma once
// A C++ port of ftfy.fix_text (ftfy 6.3.1, github.com/rspeer/python-ftfy)
// with its default TextFixerConfig, the cleanup Wan's prompt_clean starts
// with. In order, until the text stops changing, per line:
//   - HTML entities (&amp; &#x2019; &EACUTE; ...) unescaped, unless a line with
//     "<" has been seen (then the text is taken as HTML and they stay);
//   - mojibake repaired: text that is UTF-8 decoded as Latin-1, Windows-1250
//     to -1257, ISO-8859-2, MacRoman or CP437 ("cafÃ©" -> "café"), found by
//     ftfy's badness heuristic, with lost bytes marked U+FFFD;
//   - C1 controls read as Windows-1252, Latin ligatures split ("ﬁ" -> "fi"),
//     fullwidth/halfwidth forms made standard ("ＡＢ" -> "AB"), curly quotes
//     straightened, line breaks (\r\n, \r, U+2028, U+2029, U+85) made "\n",
//     terminal escapes (ESC [ ... m) and invisible control characters
//     removed, NFC applied.
// scripts/reference/ftfy_reference.py generates its tables from ftfy's own
// code and the fixture tests/ftfy_test.cpp compares against.
#include <string>

namespace spdit::text {

/// ftfy.fix_text(text) for UTF-8 text. Bytes that are not UTF-8 do not stop
/// it: each maximal ill-formed sequence becomes U+FFFD first, as Python's
/// bytes.decode("utf-8", errors="replace") does, and the result is fixed.
std::string fix_text(const std::string& utf8);

/// Python's html.unescape for UTF-8 text (Wan's basic_clean runs it twice
/// after fix_text): every HTML5 named reference, with or without ";" as the
/// standard allows, the longest entity prefix of an unknown name, numeric
/// references with Windows-1252 for 0x80..0x9F and U+FFFD for the invalid.
std::string html_unescape(const std::string& utf8);

}  // namespace spdit::text
