#include "ftfy_fixes.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "ftfy_codecs.h"
#include "ftfy_encoding.h"
#include "ftfy_regex.h"
#include "ftfy_tables.h"

namespace spdit::text::ftfy_fixes {
namespace {

using ftfy_codec::append_utf8;
using ftfy_codec::to_code_points;
using Mode = FtfyRegex::Mode;

const FtfyRegex& regex(const char* pattern, Mode mode) {
  // One compiled regex per table pattern, built on first use.
  static thread_local std::vector<std::pair<const char*, std::unique_ptr<FtfyRegex>>> cache;
  for (auto& [p, r] : cache)
    if (p == pattern) return *r;
  cache.emplace_back(pattern, std::make_unique<FtfyRegex>(pattern, mode));
  return *cache.back().second;
}

bool sorted_contains(const char32_t* table, size_t n, char32_t cp) {
  return std::binary_search(table, table + n, cp);
}

const char* sorted_lookup(const ftfy_data::CharMapping* table, size_t n, char32_t cp) {
  const auto* end = table + n;
  const auto* it = std::lower_bound(
      table, end, cp, [](const ftfy_data::CharMapping& m, char32_t c) { return m.code_point < c; });
  return it != end && it->code_point == cp ? it->utf8 : nullptr;
}

// str.translate with a table of code point -> text.
std::string translate(const std::string& text, const ftfy_data::CharMapping* table, size_t n) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : to_code_points(text)) {
    if (const char* to = sorted_lookup(table, n, cp)) {
      out += to;
    } else {
      append_utf8(out, cp);
    }
  }
  return out;
}

// html._replace_charref for "#123;" / "#x7b;" whose digits are all valid:
// the text Python's html.unescape puts in place of the reference.
std::string charref(std::string_view digits, int base) {
  constexpr unsigned long long kTooBig = 0x110000;
  unsigned long long num = 0;
  for (char c : digits) {
    const int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    num = std::min(num * base + d, kTooBig);  // anything past U+10FFFF acts alike
  }
  const auto cp = static_cast<char32_t>(num);
  for (size_t i = 0; i < ftfy_data::kInvalidCharrefCount; ++i)
    if (ftfy_data::kInvalidCharrefs[i].code_point == cp) return ftfy_data::kInvalidCharrefs[i].utf8;
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return "\xEF\xBF\xBD";
  if (sorted_contains(ftfy_data::kInvalidCodepoints, ftfy_data::kInvalidCodepointCount, cp))
    return "";
  std::string out;
  append_utf8(out, cp);
  return out;
}

bool all_of_class(std::string_view s, bool hex) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [hex](char c) {
    return (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
  });
}

// fixes._unescape_fixup for one match of HTML_ENTITY_RE ("&...;").
std::string unescape_match(std::string_view match) {
  const auto* begin = ftfy_data::kHtmlEntities;
  const auto* end = begin + ftfy_data::kHtmlEntityCount;
  const auto* it = std::lower_bound(
      begin, end, match,
      [](const ftfy_data::Entity& e, std::string_view m) { return std::string_view(e.name) < m; });
  if (it != end && std::string_view(it->name) == match) return it->utf8;
  if (match.substr(0, 2) != "&#") return std::string(match);
  // html.unescape replaces the reference only when every character between
  // "&#" (or "&#x") and ";" is a digit; otherwise a ";" is left over and
  // ftfy keeps the original. A reference that decodes to ";" is kept too.
  const std::string_view body = match.substr(2, match.size() - 3);
  std::string unescaped;
  if (all_of_class(body, false)) {
    unescaped = charref(body, 10);
  } else if ((body[0] == 'x' || body[0] == 'X') && all_of_class(body.substr(1), true)) {
    unescaped = charref(body.substr(1), 16);
  } else {
    return std::string(match);
  }
  return unescaped.find(';') != std::string::npos ? std::string(match) : unescaped;
}

// html._replace_charref's named branch for `name` (the match less its "&"):
// the entity itself, else its longest prefix of two or more characters that
// is an entity (names without ";" are the legacy ones), else unchanged.
std::string named_charref(std::string_view name) {
  const auto* begin = ftfy_data::kHtml5;
  const auto* end = begin + ftfy_data::kHtml5Count;
  auto find = [&](std::string_view n) -> const char* {
    const auto* it = std::lower_bound(
        begin, end, n, [](const ftfy_data::Entity& e, std::string_view m) { return e.name < m; });
    return it != end && std::string_view(it->name) == n ? it->utf8 : nullptr;
  };
  if (const char* v = find(name)) return v;
  // Python slices characters, not bytes: walk back over whole UTF-8 characters.
  std::vector<size_t> ends;  // byte offset after each character
  for (size_t i = 0; i < name.size();) {
    const auto b = static_cast<unsigned char>(name[i]);
    i += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    ends.push_back(std::min(i, name.size()));
  }
  for (size_t x = ends.size() - 1; x > 1; --x) {
    const size_t cut = ends[x - 1];
    if (const char* v = find(name.substr(0, cut))) return v + std::string(name.substr(cut));
  }
  return "&" + std::string(name);
}

}  // namespace

std::string html_unescape(const std::string& text) {
  if (text.find('&') == std::string::npos) return text;
  return regex(ftfy_data::kHtmlCharref, Mode::kText).sub(text, [](std::string_view m) {
    const std::string_view s = m.substr(1);
    if (s[0] != '#') return named_charref(s);
    const bool hex = s[1] == 'x' || s[1] == 'X';
    std::string_view digits = s.substr(hex ? 2 : 1);
    if (!digits.empty() && digits.back() == ';') digits.remove_suffix(1);
    return charref(digits, hex ? 16 : 10);
  });
}

bool is_bad(const std::string& text) {
  return regex(ftfy_data::kBadness, Mode::kText).search(text);
}

bool is_ascii(const std::string& text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool has_utf8_clue(const std::string& text) {
  return regex(ftfy_data::kUtf8Detector, Mode::kText).search(text);
}

bool has_altered_utf8(const std::string& bytes) {
  return regex(ftfy_data::kAlteredUtf8, Mode::kBytes).search(bytes);
}

bool has_c1_control(const std::string& text) {
  // U+0080..U+009F are C2 80..C2 9F in UTF-8.
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i + 1]);
    if (static_cast<unsigned char>(text[i]) == 0xC2 && b >= 0x80 && b <= 0x9F) return true;
  }
  return false;
}

std::string unescape_html(const std::string& text) {
  return regex(ftfy_data::kHtmlEntity, Mode::kText).sub(text, unescape_match);
}

std::string remove_terminal_escapes(const std::string& text) {
  return regex(ftfy_data::kAnsiEscape, Mode::kText).sub(text, [](std::string_view) {
    return std::string();
  });
}

std::string uncurl_quotes(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : to_code_points(text)) {
    if (sorted_contains(ftfy_data::kSingleQuotes, ftfy_data::kSingleQuoteCount, cp)) {
      out += '\'';
    } else if (sorted_contains(ftfy_data::kDoubleQuotes, ftfy_data::kDoubleQuoteCount, cp)) {
      out += '"';
    } else {
      append_utf8(out, cp);
    }
  }
  return out;
}

std::string fix_latin_ligatures(const std::string& text) {
  return translate(text, ftfy_data::kLigatures, ftfy_data::kLigaturesCount);
}

std::string fix_character_width(const std::string& text) {
  return translate(text, ftfy_data::kWidthMap, ftfy_data::kWidthMapCount);
}

std::string fix_line_breaks(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  const std::u32string cps = to_code_points(text);
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    if (cp == U'\r' && i + 1 < cps.size() && cps[i + 1] == U'\n') continue;  // \r\n -> \n
    if (cp == U'\r' || cp == 0x2028 || cp == 0x2029 || cp == 0x85) {
      out += '\n';
    } else {
      append_utf8(out, cp);
    }
  }
  return out;
}

std::string fix_surrogates(const std::string& text) { return text; }

std::string remove_control_chars(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : to_code_points(text))
    if (!sorted_contains(ftfy_data::kControlChars, ftfy_data::kControlCharCount, cp))
      append_utf8(out, cp);
  return out;
}

std::string fix_c1_controls(const std::string& text) {
  const auto& cp1252 = ftfy_codec::charmap_codec("sloppy-windows-1252");
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : to_code_points(text))
    append_utf8(out, cp >= 0x80 && cp <= 0x9F ? cp1252.chars[cp] : cp);
  return out;
}

std::string normalize_nfc(const std::string& text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) throw std::runtime_error("spdit: ICU has no NFC normalizer");
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(text);
  if (nfc->isNormalized(in, err) && U_SUCCESS(err)) return text;
  err = U_ZERO_ERROR;
  const icu::UnicodeString out = nfc->normalize(in, err);
  if (U_FAILURE(err)) throw std::runtime_error("spdit: ICU NFC normalization failed");
  std::string utf8;
  out.toUTF8String(utf8);
  return utf8;
}

std::string restore_byte_a0(const std::string& bytes) {
  const std::string a_grave =
      regex(ftfy_data::kAGraveWord, Mode::kBytes).sub(bytes, [](std::string_view) {
        return "\xC3\xA0 ";
      });
  return regex(ftfy_data::kAlteredUtf8, Mode::kBytes).sub(a_grave, [](std::string_view m) {
    std::string s(m);
    std::replace(s.begin(), s.end(), ' ', '\xA0');
    return s;
  });
}

std::string replace_lossy_sequences(const std::string& bytes) {
  return regex(ftfy_data::kLossyUtf8, Mode::kBytes).sub(bytes, [](std::string_view) {
    return "\xEF\xBF\xBD";
  });
}

std::string decode_inconsistent_utf8(const std::string& text) {
  return regex(ftfy_data::kUtf8Detector, Mode::kText).sub(text, [&](std::string_view m) {
    std::string sub(m);
    // A match shorter than the text (in bytes as in characters: it is part of it).
    if (sub.size() < text.size() && is_bad(sub)) return ftfy_encoding::fix_encoding(sub);
    return sub;
  });
}

}  // namespace spdit::text::ftfy_fixes
