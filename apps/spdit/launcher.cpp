#include "launcher.h"

#include "launch_env.h"

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
#include <cmath>
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
  double work_mark = -1;          // CPU seconds when it last showed work
  Clock::time_point worked_at{};  // and when that was
};

// More ranks than this per core are refused without --oversubscribe. The
// tests run 8 ranks on 2 cores (correctness, not speed), which stays allowed.
constexpr int kRanksPerCoreLimit = 4;

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

// Refuses, before any rank starts, what would fail later or obscurely.
void check_options(const LaunchOptions& o) {
  if (o.nproc < 1)
    throw std::invalid_argument("--nproc must be at least 1, got " + std::to_string(o.nproc));
  if (o.command.empty()) {
    throw std::invalid_argument(
        "no command to launch; usage: spdit launch --nproc N -- CMD [ARGS...]");
  }
  if (o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes) {
    throw std::invalid_argument("--node-rank " + std::to_string(o.node_rank) +
                                " must be in [0, --nnodes " + std::to_string(o.nnodes) + ")");
  }
  if (o.nnodes > 1 && o.master_port <= 0) {
    throw std::invalid_argument(
        "--master-port is required with --nnodes > 1 (every node must use the same one)");
  }
  if (!(o.timeout_s > 0) || !std::isfinite(o.timeout_s)) {
    throw std::invalid_argument("--timeout must be a positive number of seconds, got " +
                                std::to_string(o.timeout_s));
  }
  const int cores = usable_cores();
  if (o.nproc > kRanksPerCoreLimit * cores && !o.oversubscribe) {
    throw std::invalid_argument("--nproc " + std::to_string(o.nproc) + " starts " +
                                std::to_string(o.nproc) + " ranks on the " + std::to_string(cores) +
                                " core(s) this process may use, more than " +
                                std::to_string(kRanksPerCoreLimit) +
                                " per core: every step would be slower than with fewer ranks, and "
                                "peers starved of CPU time out; use "
                                "--nproc " +
                                std::to_string(kRanksPerCoreLimit * cores) +
                                " or fewer, or add --oversubscribe if you mean it");
  }
  // Only node 0 hosts the store, so only there can the port be checked.
  if (o.master_port > 0 && o.node_rank == 0 && port_in_use(o.master_port)) {
    throw std::invalid_argument(
        "--master-port " + std::to_string(o.master_port) +
        " is in use on this machine (another job's rendezvous?); give each job its own "
        "port, or leave --master-port out to get a free one");
  }
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return strsignal(sig);
  }
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

int launch_local(const LaunchOptions& o) {
  check_options(o);
  const int port = o.master_port > 0 ? o.master_port : find_free_port();
  const std::string job_id =
      o.job_id.empty() ? job_id_for(o.master_addr, port, o.nnodes, o.nproc) : o.job_id;
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
      close(out[0]);
      close(out[1]);
      close(err[0]);
      close(err[1]);
      setenv("RANK", std::to_string(o.node_rank * o.nproc + r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nnodes * o.nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("SPDIT_TIMEOUT", std::to_string(o.timeout_s).c_str(), 1);
      setenv("SPDIT_JOB_ID", job_id.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "spdit launch: cannot execute '%s': %s\n", argv[0],
                   std::strerror(errno));
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
  std::vector<int> later_failures;  // failed on their own after the first, before any was stopped
  bool stopping = false;            // the launcher has signalled the ranks
  int running = o.nproc;
  auto term_at = Clock::time_point::max();
  auto kill_at = Clock::time_point::max();
  const auto kGrace = std::chrono::seconds(3);
  // Once a rank has ended well, the others may go on working (rank 0 runs
  // `--check`'s one-rank reference alone), so no clock runs against them. A
  // rank stuck waiting for a peer that left uses no CPU, and fails itself
  // within the process-group timeout; only a rank that used no CPU for that
  // timeout plus a margin is stuck beyond it, and stopped.
  const auto stuck_after =
      std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000) + 10000);
  constexpr double kWorkSeconds = 0.2;  // CPU that proves a rank works; heartbeats use far less
  auto next_sample = Clock::time_point::max();
  auto stop = [&](int sig, Clock::time_point now) {
    if (running > 0) signal_all(ranks, sig);
    stopping = true;
    kill_at = now + std::chrono::milliseconds(static_cast<int64_t>(o.stop_grace_s * 1000));
  };

  while (running > 0 || std::any_of(ranks.begin(), ranks.end(),
                                    [](const Rank& r) { return r.out_fd >= 0 || r.err_fd >= 0; })) {
    std::vector<pollfd> fds;
    for (auto& r : ranks) {
      if (r.out_fd >= 0) fds.push_back({r.out_fd, POLLIN, 0});
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    }
    if (!fds.empty())
      poll(fds.data(), fds.size(), 100);
    else
      usleep(100 * 1000);
    for (int r = 0; r < o.nproc; ++r) {
      drain(ranks[r].out_fd, base + r, ranks[r].out_buf, std::cout);
      drain(ranks[r].err_fd, base + r, ranks[r].err_buf, std::cerr);
    }
    std::vector<int> ended;
    for (int r = 0; r < o.nproc; ++r) {
      auto& rk = ranks[r];
      if (!rk.running) continue;
      int status = 0;
      if (waitpid(rk.pid, &status, WNOHANG) == rk.pid) {
        rk.running = false;
        rk.status = status;
        --running;
        kill(-rk.pid, SIGKILL);  // anything the rank left behind in its group
        ended.push_back(r);
      }
    }
    const auto now = Clock::now();
    if (!ended.empty() && !stopping && !g_stop_signal) {
      // Of ranks found ended together, one killed by a signal is the cause:
      // its peers fail with an error because it vanished, not the reverse.
      std::stable_sort(ended.begin(), ended.end(), [&](int a, int b) {
        return WIFSIGNALED(ranks[a].status) && !WIFSIGNALED(ranks[b].status);
      });
      for (int r : ended) {
        const int status = ranks[r].status;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        if (failed_rank >= 0) {
          later_failures.push_back(base + r);
          continue;
        }
        failed_rank = r;
        failed_status = status;
        std::cerr << "spdit launch: rank " << base + r << " " << describe(status)
                  << "; stopping the other ranks" << std::endl;
        // A short grace first, so that survivors can say what they saw
        // (which peer vanished) before they are stopped.
        term_at = now + kGrace;
      }
      if (next_sample == Clock::time_point::max() && running > 0)
        next_sample = now;  // start watching
    }
    if (g_stop_signal && !stopping) {
      std::cerr << "spdit launch: interrupted (" << signal_name(g_stop_signal)
                << "); stopping all ranks" << std::endl;
      stop(SIGTERM, now);
    }
    if (now > term_at && !stopping) stop(SIGTERM, now);
    if (now >= next_sample && !stopping && failed_rank < 0) {
      next_sample = now + std::chrono::seconds(1);
      const auto cpu_by_group = cpu_seconds_by_group();
      for (int r = 0; r < o.nproc; ++r) {
        auto& rk = ranks[r];
        if (!rk.running) continue;
        const auto found = cpu_by_group.find(rk.pid);
        if (found == cpu_by_group.end()) continue;
        const double cpu = found->second;
        if (rk.work_mark < 0 || cpu - rk.work_mark >= kWorkSeconds) {
          rk.work_mark = cpu;
          rk.worked_at = now;
        } else if (now - rk.worked_at > stuck_after) {
          std::cerr << "spdit launch: rank " << base + r << " has done no work (no CPU time) for "
                    << std::chrono::duration_cast<std::chrono::seconds>(now - rk.worked_at).count()
                    << " s since another rank ended, longer than the " << o.timeout_s
                    << " s timeout allows a wait for a peer: it is stuck; stopping it" << std::endl;
          failed_rank = r;
          failed_status = 0;
          stop(SIGTERM, now);
          break;
        }
      }
    }
    if (now > kill_at && running > 0) signal_all(ranks, SIGKILL);
  }
  if (g_stop_signal && o.ranks_stop_cleanly && failed_rank < 0 &&
      std::all_of(ranks.begin(), ranks.end(), [](const Rank& r) {
        return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
      })) {
    std::cerr << "spdit launch: stopped by " << signal_name(g_stop_signal)
              << "; every rank exited cleanly" << std::endl;
    return 0;
  }
  if (g_stop_signal) {
    std::cerr << "spdit launch: interrupted by " << signal_name(g_stop_signal)
              << "; all ranks stopped" << std::endl;
    return 128 + g_stop_signal;
  }
  if (failed_rank < 0) return 0;
  if (!later_failures.empty()) {
    std::sort(later_failures.begin(), later_failures.end());
    // Each later error names what it saw; the first to fail is where to look
    // first (a rank killed by a signal is put first of those found together).
    std::cerr << "spdit launch: the first rank to fail was rank " << base + failed_rank << " ("
              << describe(failed_status) << "); rank(s) [" << join(later_failures) << "] failed too"
              << std::endl;
  }
  int code = exit_code_of(failed_status);
  return code == 0 ? 1 : code;
}

}  // namespace spdit::cli
