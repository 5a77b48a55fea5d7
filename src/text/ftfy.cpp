#include "spdit/text/ftfy.h"

#include "ftfy_codecs.h"
#include "ftfy_encoding.h"
#include "ftfy_fixes.h"

namespace spdit::text {
namespace {

// ftfy.fix_and_explain for one segment, default config.
std::string fix_segment(std::string text, bool unescape_html) {
  namespace f = ftfy_fixes;
  while (true) {
    const std::string original = text;
    if (unescape_html) text = f::unescape_html(text);
    text = ftfy_encoding::fix_encoding(text);
    text = f::fix_c1_controls(text);
    text = f::fix_latin_ligatures(text);
    text = f::fix_character_width(text);
    text = f::uncurl_quotes(text);
    text = f::fix_line_breaks(text);
    text = f::fix_surrogates(text);
    text = f::remove_terminal_escapes(text);
    text = f::remove_control_chars(text);
    text = f::normalize_nfc(text);
    if (text == original) return text;
  }
}

}  // namespace

std::string fix_text(const std::string& utf8) {
  const std::string text = ftfy_codec::decode_utf8_replace(utf8);
  // ftfy fixes the text a line at a time ("\n" ends a segment), and a segment
  // longer than max_decode_length (1,000,000 characters) is cut there.
  constexpr size_t kMaxDecodeLength = 1000000;
  bool unescape_html = true;  // "auto": off from the first segment holding "<" on
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = pos;
    size_t chars = 0;
    while (end < text.size() && chars < kMaxDecodeLength) {
      const auto b = static_cast<unsigned char>(text[end]);
      end += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
      ++chars;
      if (b == '\n') break;
    }
    const std::string segment = text.substr(pos, end - pos);
    if (unescape_html && segment.find('<') != std::string::npos) unescape_html = false;
    out += fix_segment(segment, unescape_html);
    pos = end;
  }
  return out;
}

std::string html_unescape(const std::string& utf8) {
  return ftfy_fixes::html_unescape(ftfy_codec::decode_utf8_replace(utf8));
}

}  // namespace spdit::text
