#include "launch_env.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace spdit::cli {
namespace {

// A port rank 0 can bind on every address now. Tried first below the kernel's
// ephemeral range: ports there are never handed to outgoing connections, so
// none can be taken between this probe and rank 0's bind, and none is held by
// a TIME_WAIT socket of an earlier job's Gloo connections.
bool can_bind(int port, bool reuse) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  if (reuse) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

int ephemeral_range_start() {
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768;
  f >> lo;
  return lo > 2048 ? lo : 32768;
}

}  // namespace

int find_free_port() {
  const int hi = ephemeral_range_start(), lo = std::max(1024, hi - 12000);
  uint32_t x = static_cast<uint32_t>(getpid()) * 2654435761u ^
               static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (int attempt = 0; attempt < 64; ++attempt) {
    x = x * 1664525u + 1013904223u;
    const int port = lo + static_cast<int>((x >> 8) % static_cast<uint32_t>(hi - lo));
    if (can_bind(port, /*reuse=*/false)) return port;
  }
  // Everything tried was taken: let the kernel choose one.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("cannot create a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw std::runtime_error("cannot bind a socket to find a free port");
  }
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// SO_REUSEADDR binds over TIME_WAIT sockets but never over a listener.
bool port_in_use(int port) { return !can_bind(port, /*reuse=*/true); }

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

std::string job_id_for(const std::string& master_addr, int port, int nnodes, int nproc) {
  for (const char* name : {"SPDIT_JOB_ID", "TORCHELASTIC_RUN_ID"}) {
    if (const char* v = std::getenv(name); v && *v) return v;
  }
  std::ostringstream os;
  if (nnodes > 1) {
    // Each node's launcher must arrive at the same id without talking.
    os << master_addr << ":" << port << "/" << nnodes << "x" << nproc;
    return os.str();
  }
  uint64_t r = 0;
  std::ifstream u("/dev/urandom", std::ios::binary);
  u.read(reinterpret_cast<char*>(&r), sizeof(r));
  r ^= static_cast<uint64_t>(getpid()) << 32 ^
       static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  os << std::hex << r;
  return os.str();
}

namespace {

// The fields of /proc/PID/stat after the command name (which is in
// parentheses and may hold spaces): [0] is state, [2] pgrp, [11..14]
// utime, stime, cutime, cstime in clock ticks.
std::vector<std::string> stat_fields(const std::string& pid) {
  std::ifstream f("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(f, line)) return {};
  const auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 > line.size()) return {};
  std::istringstream is(line.substr(close_paren + 2));
  return {std::istream_iterator<std::string>(is), {}};
}

}  // namespace

std::map<pid_t, double> cpu_seconds_by_group() {
  std::map<pid_t, double> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    auto f = stat_fields(e->d_name);
    if (f.size() < 15) continue;
    double ticks = 0;
    for (int i = 11; i <= 14; ++i) ticks += std::atof(f[i].c_str());
    out[static_cast<pid_t>(std::atol(f[2].c_str()))] += ticks / tick;
  }
  closedir(d);
  return out;
}

}  // namespace spdit::cli
