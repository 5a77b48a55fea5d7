#pragma once
// A compiled PCRE2 pattern over UTF-8, with Unicode classes (\p{L}, \s, ...)
// as Unicode defines them (PCRE2_UTF | PCRE2_UCP): the tokenizers' regexes
// need Unicode's character classes, which std::regex does not have.
#include <memory>
#include <string>
#include <vector>

namespace spdit::text {

class Pcre2Regex {
 public:
  /// Compiles `pattern` (UTF-8); throws with PCRE2's message and offset.
  explicit Pcre2Regex(const std::string& pattern, bool caseless = false);
  /// Every non-overlapping match, left to right (re.findall without groups).
  std::vector<std::string> find_all(const std::string& subject) const;
  /// Every match replaced by `replacement` ($1 names a group).
  std::string replace_all(const std::string& subject, const std::string& replacement) const;

 private:
  struct Code;
  std::shared_ptr<Code> code_;
  std::string pattern_;
};

/// Throws naming `what` when `text` is not well-formed UTF-8: PCRE2 and ICU
/// would reject it later with a less helpful message.
void require_utf8(const std::string& text, const std::string& what);

}  // namespace spdit::text
