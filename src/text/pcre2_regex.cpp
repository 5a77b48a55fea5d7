#define PCRE2_CODE_UNIT_WIDTH 8
#include "pcre2_regex.h"

#include <pcre2.h>

#include <stdexcept>

namespace spdit::text {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct Pcre2Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

Pcre2Regex::Pcre2Regex(const std::string& pattern, bool caseless)
    : code_(std::make_shared<Code>()), pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (caseless ? PCRE2_CASELESS : 0);
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                              &error, &offset, nullptr);
  if (!code_->code) {
    throw std::runtime_error("spdit: regex '" + pattern + "' does not compile at offset " +
                             std::to_string(offset) + ": " + pcre2_message(error));
  }
}

std::vector<std::string> Pcre2Regex::find_all(const std::string& subject) const {
  std::vector<std::string> out;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), pcre2_match_data_free);
  PCRE2_SIZE start = 0;
  while (start <= subject.size()) {
    const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()),
                               subject.size(), start, 0, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      throw std::runtime_error("spdit: regex '" + pattern_ + "' failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    out.emplace_back(subject, ov[0], ov[1] - ov[0]);
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      // An empty match: step over one whole UTF-8 character, never into one.
      start = ov[1] + 1;
      while (start < subject.size() && (static_cast<unsigned char>(subject[start]) & 0xC0) == 0x80)
        ++start;
    }
  }
  return out;
}

std::string Pcre2Regex::replace_all(const std::string& subject,
                                    const std::string& replacement) const {
  std::string out(subject.size() * 2 + 16, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    PCRE2_SIZE size = out.size();
    const int rc =
        pcre2_substitute(code_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(),
                         0, PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, nullptr,
                         nullptr, reinterpret_cast<PCRE2_SPTR>(replacement.data()),
                         replacement.size(), reinterpret_cast<PCRE2_UCHAR*>(out.data()), &size);
    if (rc == PCRE2_ERROR_NOMEMORY) {
      out.resize(size);  // PCRE2 said how much it needs
      continue;
    }
    if (rc < 0)
      throw std::runtime_error("spdit: regex '" + pattern_ + "' failed: " + pcre2_message(rc));
    out.resize(size);
    return out;
  }
  throw std::runtime_error("spdit: regex '" + pattern_ + "': replacement did not fit");
}

void require_utf8(const std::string& text, const std::string& what) {
  // PCRE2 checks UTF-8 for us: a match attempt of the empty pattern fails with
  // a UTF error code on a malformed subject.
  int error = 0;
  PCRE2_SIZE offset = 0;
  static pcre2_code* empty =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(""), 0, PCRE2_UTF, &error, &offset, nullptr);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create(1, nullptr), pcre2_match_data_free);
  const int rc = pcre2_match(empty, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0,
                             md.get(), nullptr);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    throw std::runtime_error("spdit: " + what + " is not valid UTF-8 (byte " +
                             std::to_string(pcre2_get_startchar(md.get())) +
                             "): " + pcre2_message(rc) + "; give the text as UTF-8");
  }
}

}  // namespace spdit::text
