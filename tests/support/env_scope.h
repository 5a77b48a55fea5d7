#pragma once
// Sets an environment variable for one scope and restores what was there
// (unset if it was unset). spdit's kernel choices read theirs on every call,
// so one test process can compare kernels.
#include <cstdlib>
#include <string>

namespace spdit::test {

class EnvScope {
 public:
  EnvScope(const char* var, const char* value) : var_(var) {
    if (const char* old = std::getenv(var)) saved_ = old, had_ = true;
    setenv(var, value, 1);
  }
  ~EnvScope() { had_ ? setenv(var_, saved_.c_str(), 1) : unsetenv(var_); }
  EnvScope(const EnvScope&) = delete;
  EnvScope& operator=(const EnvScope&) = delete;

 private:
  const char* var_;
  std::string saved_;
  bool had_ = false;
};

}  // namespace spdit::test
