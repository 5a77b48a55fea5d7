#include "error_text.h"

#include "spdit/runtime/memory_meter.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>

namespace spdit::cli {

std::string clean_error_text(const std::string& what) {
  std::string s = what.substr(0, what.find("\nException raised from "));
  // "spdit: " at the start, or after "rank N: " (run_in_process adds that).
  static const std::regex prefix(R"(^((rank \d+: )?)spdit: )");
  s = std::regex_replace(s, prefix, "$1", std::regex_constants::format_first_only);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int64_t available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

std::string gigabytes(double bytes) { return format_bytes(static_cast<int64_t>(bytes)); }

std::string out_of_memory_advice(const std::string& what) {
  const bool c10_oom = what.find("can't allocate memory") != std::string::npos ||
                       what.find("not enough memory") != std::string::npos;
  const bool bad_alloc = what == "std::bad_alloc";
  if (!c10_oom && !bad_alloc) return "";
  std::ostringstream os;
  os << "out of memory: ";
  static const std::regex asked(R"(allocate (\d+) bytes)");
  std::smatch m;
  if (std::regex_search(what, m, asked)) {
    os << "a tensor of " << gigabytes(std::stod(m[1].str())) << " was needed";
  } else {
    os << "an allocation failed";
  }
  const int64_t avail = available_memory_bytes();
  if (avail > 0)
    os << ", and this machine has " << gigabytes(static_cast<double>(avail)) << " available";
  os << ". Ask for less: a smaller --preset, --height/--width or --text-len; or spread the "
        "sequence over "
        "more ranks on more machines (weights and text are replicated on every rank)";
  return os.str();
}

}  // namespace spdit::cli
