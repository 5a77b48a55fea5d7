#pragma once
// The two things ftfy does with its regexes, over PCRE2: search (re.search)
// and substitution through a function (re.sub with a callable). ftfy has
// regexes over text (UTF mode: the subject is UTF-8 and a match is whole
// characters) and over bytes (no UTF: one byte is one character).
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace spdit::text {

class FtfyRegex {
 public:
  enum class Mode { kText, kBytes };
  FtfyRegex(const char* pattern, Mode mode);

  /// Whether the pattern matches anywhere in `subject` (re.search).
  bool search(const std::string& subject) const;
  /// Every non-overlapping match, left to right, replaced by what `replace`
  /// returns for it (re.sub(callable, subject)). Lookbehinds see the original
  /// subject, as in Python.
  std::string sub(const std::string& subject,
                  const std::function<std::string(std::string_view)>& replace) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
};

}  // namespace spdit::text
