#pragma once
// Runs a shell command as a user would, capturing stdout and stderr together.
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

namespace spdit::test {

struct CommandResult {
  int code;  // exit code, or 128 + signal
  std::string output;
  double seconds;
};

inline CommandResult run_command(const std::string& cmd) {
  auto t0 = std::chrono::steady_clock::now();
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), f)) out += buf.data();
  int status = pclose(f);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out, s};
}

/// The message of the exception fn throws, or "<no error>".
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace spdit::test
