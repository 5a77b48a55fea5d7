#define PCRE2_CODE_UNIT_WIDTH 8
#include "ftfy_regex.h"

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

struct FtfyRegex::Code {
  pcre2_code* code = nullptr;
  uint32_t match_options = 0;
  ~Code() { pcre2_code_free(code); }
};

FtfyRegex::FtfyRegex(const char* pattern, Mode mode) : code_(std::make_shared<Code>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = mode == Mode::kText ? PCRE2_UTF : 0;
  // Text subjects are well-formed UTF-8 by construction (fix_text and
  // html_unescape decode their input with U+FFFD for bad bytes first, and
  // every step writes UTF-8), so PCRE2 need not re-check the rest of the
  // subject at each match of a substitution loop.
  code_->match_options = mode == Mode::kText ? PCRE2_NO_UTF_CHECK : 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, options,
                              &error, &offset, nullptr);
  if (!code_->code) {
    throw std::logic_error("spdit: ftfy regex does not compile at offset " +
                           std::to_string(offset) + ": " + pcre2_message(error));
  }
  pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE);  // a speed-up only; fine if unavailable
}

bool FtfyRegex::search(const std::string& subject) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), pcre2_match_data_free);
  const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()),
                             subject.size(), 0, code_->match_options, md.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw std::runtime_error("spdit: ftfy regex failed: " + pcre2_message(rc));
  return true;
}

std::string FtfyRegex::sub(const std::string& subject,
                           const std::function<std::string(std::string_view)>& replace) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), pcre2_match_data_free);
  std::string out;
  PCRE2_SIZE start = 0;
  PCRE2_SIZE copied = 0;
  while (start <= subject.size()) {
    const int rc = pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()),
                               subject.size(), start, code_->match_options, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error("spdit: ftfy regex failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    // None of ftfy's patterns can match the empty string; guard anyway so a
    // wrong table cannot loop forever.
    if (ov[1] == ov[0]) throw std::logic_error("spdit: ftfy regex matched the empty string");
    out.append(subject, copied, ov[0] - copied);
    out += replace(std::string_view(subject).substr(ov[0], ov[1] - ov[0]));
    copied = start = ov[1];
  }
  out.append(subject, copied, std::string::npos);
  return out;
}

}  // namespace spdit::text
