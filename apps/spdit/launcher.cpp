#include "launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Rank {
  pid_t pid = -1;
  int out_fd = -1;
  int err_fd = -1;
  std::string out_buf, err_buf;
  bool running = false;
  int status = 0;
};

volatile sig_atomic_t g_stop_signal = 0;
void on_signal(int sig) { g_stop_signal = sig; }

void emit(int rank, std::string& buf, bool flush_all, std::ostream& os) {
  size_t start = 0, nl;
  while ((nl = buf.find('\n', start)) != std::string::npos) {
    os << "[rank " << rank << "] " << buf.substr(start, nl - start + 1);
    start = nl + 1;
  }
  buf.erase(0, start);
  if (flush_all && !buf.empty()) {
    os << "[rank " << rank << "] " << buf << "\n";
    buf.clear();
  }
  os.flush();
}

// Reads what is there; closes the fd at end of file.
void drain(int& fd, int rank, std::string& buf, std::ostream& os) {
  if (fd < 0) return;
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      close(fd);
      fd = -1;
      emit(rank, buf, true, os);
      return;
    }
    if (errno == EINTR) continue;
    break;  // EAGAIN: nothing more now
  }
  emit(rank, buf, false, os);
}

void signal_all(std::vector<Rank>& ranks, int sig) {
  for (auto& r : ranks) {
    if (r.running) kill(-r.pid, sig);  // the rank's whole process group
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "ended";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

namespace {

// A port rank 0 can bind on every address now. Tried first below the kernel's
// ephemeral range: ports there are never handed to outgoing connections, so
// none can be taken between this probe and rank 0's bind, and none is held by
// a TIME_WAIT socket of an earlier job's Gloo connections.
bool can_bind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
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
    if (can_bind(port)) return port;
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

int launch_local(const LaunchOptions& o) {
  if (o.nproc < 1) throw std::invalid_argument("--nproc must be at least 1, got " + std::to_string(o.nproc));
  if (o.command.empty()) {
    throw std::invalid_argument("no command to launch; usage: spdit launch --nproc N -- CMD [ARGS...]");
  }
  if (o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes) {
    throw std::invalid_argument("--node-rank " + std::to_string(o.node_rank) + " must be in [0, --nnodes " +
                                std::to_string(o.nnodes) + ")");
  }
  if (o.nnodes > 1 && o.master_port <= 0) {
    throw std::invalid_argument("--master-port is required with --nnodes > 1 (every node must use the same one)");
  }
  const int port = o.master_port > 0 ? o.master_port : find_free_port();
  const int base = o.node_rank * o.nproc;  // global rank of this node's first rank
  std::vector<Rank> ranks(o.nproc);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  for (int r = 0; r < o.nproc; ++r) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe() failed");
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork() failed for rank " + std::to_string(r));
    if (pid == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the launcher
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      close(out[0]); close(out[1]); close(err[0]); close(err[1]);
      setenv("RANK", std::to_string(o.node_rank * o.nproc + r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nnodes * o.nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("SPDIT_TIMEOUT", std::to_string(o.timeout_s).c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "spdit launch: cannot execute '%s': %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    setpgid(pid, pid);
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    ranks[r] = Rank{pid, out[0], err[0], "", "", true, 0};
  }

  int failed_rank = -1;
  int failed_status = 0;
  int running = o.nproc;
  // Once one rank has ended, the others get the process-group timeout (plus a
  // grace period) to end too; past that they are stuck and are stopped.
  auto deadline = Clock::time_point::max();
  auto term_at = Clock::time_point::max();
  auto kill_at = Clock::time_point::max();
  const auto kGrace = std::chrono::seconds(3);
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000) + 10000);

  while (running > 0 || std::any_of(ranks.begin(), ranks.end(), [](const Rank& r) {
           return r.out_fd >= 0 || r.err_fd >= 0;
         })) {
    std::vector<pollfd> fds;
    for (auto& r : ranks) {
      if (r.out_fd >= 0) fds.push_back({r.out_fd, POLLIN, 0});
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    }
    if (!fds.empty()) poll(fds.data(), fds.size(), 100);
    else usleep(100 * 1000);
    for (int r = 0; r < o.nproc; ++r) {
      drain(ranks[r].out_fd, base + r, ranks[r].out_buf, std::cout);
      drain(ranks[r].err_fd, base + r, ranks[r].err_buf, std::cerr);
    }
    for (int r = 0; r < o.nproc; ++r) {
      auto& rk = ranks[r];
      if (!rk.running) continue;
      int status = 0;
      if (waitpid(rk.pid, &status, WNOHANG) == rk.pid) {
        rk.running = false;
        rk.status = status;
        --running;
        kill(-rk.pid, SIGKILL);  // anything the rank left behind in its group
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && failed_rank < 0) {
          failed_rank = r;
          failed_status = status;
          std::cerr << "spdit launch: rank " << base + r << " " << describe(status)
                    << "; stopping the other ranks" << std::endl;
          // A short grace first, so that survivors can say what they saw
          // (which peer vanished) before they are stopped.
          term_at = Clock::now() + kGrace;
        }
        if (deadline == Clock::time_point::max()) deadline = Clock::now() + grace;
      }
    }
    if (g_stop_signal && kill_at == Clock::time_point::max()) {
      std::cerr << "spdit launch: received signal " << g_stop_signal << "; stopping all ranks"
                << std::endl;
      signal_all(ranks, SIGTERM);
      kill_at = Clock::now() + std::chrono::seconds(5);
    }
    const auto now = Clock::now();
    if (now > term_at && kill_at == Clock::time_point::max()) {
      if (running > 0) signal_all(ranks, SIGTERM);
      kill_at = now + std::chrono::seconds(5);
    }
    if (now > deadline && running > 0 && kill_at == Clock::time_point::max()) {
      std::cerr << "spdit launch: " << running << " rank(s) still running "
                << o.timeout_s + 10 << " s after another ended; stopping them" << std::endl;
      signal_all(ranks, SIGTERM);
      kill_at = now + std::chrono::seconds(5);
      if (failed_rank < 0) {
        for (int r = 0; r < o.nproc; ++r) {
          if (ranks[r].running) { failed_rank = r; failed_status = SIGTERM; break; }
        }
      }
    }
    if (now > kill_at && running > 0) signal_all(ranks, SIGKILL);
  }
  if (g_stop_signal && failed_rank < 0) return 128 + g_stop_signal;
  if (failed_rank < 0) return 0;
  int code = exit_code_of(failed_status);
  return code == 0 ? 1 : code;
}

}  // namespace spdit::cli
