#include "clip_text_normalize.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <stdexcept>

#include "pcre2_regex.h"

namespace spdit::text {
namespace {

std::u16string to_utf16(const std::string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  u_strFromUTF8(nullptr, 0, &n, s.data(), static_cast<int32_t>(s.size()), &err);
  std::u16string out(static_cast<size_t>(n), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), n, nullptr, s.data(),
                static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("spdit: text is not valid UTF-8: ") + u_errorName(err));
  return out;
}

std::string to_utf8(const std::u16string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  const auto* src = reinterpret_cast<const UChar*>(s.data());
  u_strToUTF8(nullptr, 0, &n, src, static_cast<int32_t>(s.size()), &err);
  std::string out(static_cast<size_t>(n), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), n, nullptr, src, static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("spdit: UTF-16 to UTF-8 failed: ") + u_errorName(err));
  return out;
}

std::string nfc(const std::string& s) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&err);
  const std::u16string in = to_utf16(s);
  std::u16string out(in.size() * 3 + 4, u'\0');
  err = U_ZERO_ERROR;
  const int32_t n = unorm2_normalize(
      norm, reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()),
      reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &err);
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("spdit: NFC normalization failed: ") + u_errorName(err));
  out.resize(static_cast<size_t>(n));
  return to_utf8(out);
}

// Root locale: Python's str.lower() is language-independent too.
std::string lower(const std::string& s) {
  const std::u16string in = to_utf16(s);
  std::u16string out(in.size() * 3 + 4, u'\0');
  UErrorCode err = U_ZERO_ERROR;
  const int32_t n = u_strToLower(
      reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()),
      reinterpret_cast<const UChar*>(in.data()), static_cast<int32_t>(in.size()), "", &err);
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("spdit: lower-casing failed: ") + u_errorName(err));
  out.resize(static_cast<size_t>(n));
  return to_utf8(out);
}

}  // namespace

std::string clip_basic_clean(const std::string& text) {
  require_utf8(text, "the prompt");
  // transformers' _is_control: category C*, except tab, newline, carriage return.
  static const Pcre2Regex removed(R"([\x{0}\x{FFFD}]|(?![\t\n\r])\p{C})");
  // _is_whitespace: the ASCII four and category Zs.
  static const Pcre2Regex whitespace(R"([\t\n\r\p{Zs}])");
  // BasicTokenizer's own table of CJK ideograph blocks.
  static const Pcre2Regex cjk(
      R"(([\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F})"
      R"(\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]))");
  static const Pcre2Regex word(R"(\S+)");
  std::string s = removed.replace_all(text, "");
  s = whitespace.replace_all(s, " ");
  s = cjk.replace_all(s, " $1 ");
  std::string out;
  for (const auto& w : word.find_all(nfc(s))) {
    if (!out.empty()) out += ' ';
    out += lower(w);
  }
  return out;
}

std::vector<std::string> clip_pre_tokenize(const std::string& text) {
  static const Pcre2Regex pattern(
      R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)",
      /*caseless=*/true);
  return pattern.find_all(clip_basic_clean(text));
}

}  // namespace spdit::text

namespace spdit::text {

std::string utf8_with_replacement(const std::string& bytes) {
  // ICU substitutes maximal ill-formed subparts, as Python does.
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = 0;
  u_strFromUTF8WithSub(nullptr, 0, &n, bytes.data(), static_cast<int32_t>(bytes.size()), 0xFFFD,
                       nullptr, &err);
  std::u16string out(static_cast<size_t>(n), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8WithSub(reinterpret_cast<UChar*>(out.data()), n, nullptr, bytes.data(),
                       static_cast<int32_t>(bytes.size()), 0xFFFD, nullptr, &err);
  if (U_FAILURE(err))
    throw std::runtime_error(std::string("spdit: UTF-8 decoding failed: ") + u_errorName(err));
  return to_utf8(out);
}

}  // namespace spdit::text

namespace spdit::text {

std::string unicode_nfc(const std::string& text) { return nfc(text); }

}  // namespace spdit::text
