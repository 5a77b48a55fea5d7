#include "spdit/runtime/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace spdit {
namespace {

struct Fault {
  bool armed = false;
  int rank = -1;
  std::string point;
  int after = 1;
  bool throws = false;  // action=throw: an error, not a death
  std::atomic<int> seen{0};
};

Fault& fault() {
  static Fault f;
  static bool parsed = [] {
    const char* spec = std::getenv("SPDIT_FAULT");
    if (!spec || !*spec) return true;
    std::stringstream ss(spec);
    for (std::string item; std::getline(ss, item, ',');) {
      auto eq = item.find('=');
      if (eq == std::string::npos) continue;
      const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
      if (k == "rank") f.rank = std::atoi(v.c_str());
      if (k == "point") f.point = v;
      if (k == "after") f.after = std::atoi(v.c_str());
      if (k == "action") f.throws = v == "throw";
    }
    f.armed = f.rank >= 0 && !f.point.empty();
    return true;
  }();
  (void)parsed;
  return f;
}

}  // namespace

void fault_point(const char* name, int rank) {
  Fault& f = fault();
  if (!f.armed || rank != f.rank || f.point != name) return;
  if (++f.seen == f.after && f.throws) {
    throw std::runtime_error("SPDIT_FAULT: an error injected on rank " + std::to_string(rank) +
                             " at " + name);
  }
  if (f.seen == f.after) {
    std::cerr << "spdit: SPDIT_FAULT: killing rank " << rank << " at " << name << " #" << f.after
              << std::endl;
    kill(getpid(), SIGKILL);
  }
}

}  // namespace spdit
