#include "machine_info.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

namespace spdit::cli {

nlohmann::json machine_info() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model;
  std::set<std::string> flags;
  while (std::getline(f, line)) {
    if (model.empty() && line.rfind("model name", 0) == 0) model = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) {
      std::istringstream is(line.substr(line.find(':') + 1));
      for (std::string fl; is >> fl;) {
        if (fl == "avx2" || fl == "fma" || fl.rfind("avx512", 0) == 0 || fl.rfind("amx", 0) == 0 ||
            fl == "sse4_2")
          flags.insert(fl);
      }
    }
  }
  return {{"cpu", model},
          {"cores", std::thread::hardware_concurrency()},
          {"flags", std::vector<std::string>(flags.begin(), flags.end())}};
}

}  // namespace spdit::cli
