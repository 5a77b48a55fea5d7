// libFuzzer target: any command line (NUL- or newline-separated words) is
// parsed by the real `spdit` option definitions; parsing may refuse it with a
// CLI11 error but never crash. Nothing is executed.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> words{"spdit"};
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n') {
      words.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) words.push_back(cur);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  CLI::App app{"spdit"};
  spdit::cli::Action action;
  spdit::cli::add_all_commands(app, action);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::Error&) {
  } catch (const std::exception&) {
  }
  return 0;
}
