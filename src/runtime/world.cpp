#include "spdit/runtime/world.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef SPDIT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <cmath>
#include <cstring>

#include "group_impl.h"
#include "spdit/runtime/fault_injection.h"

namespace spdit {
namespace {

thread_local World* g_current_world = nullptr;

std::string join_ints(const std::vector<int>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  return os.str();
}

std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    throw std::runtime_error(std::string("spdit: environment variable ") + name +
                             " is not set; start the program with `spdit launch --nproc N -- ...`, "
                             "torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
  }
  return v;
}

int parse_int_env(const char* name, const std::string& value) {
  try {
    size_t used = 0;
    int v = std::stoi(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error(std::string("spdit: environment variable ") + name + "='" + value +
                             "' is not an integer");
  }
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// Gloo and the TCP store write to sockets without MSG_NOSIGNAL: once a peer
// has gone, a write raises SIGPIPE, whose default kills this whole process
// without a word, where the collective should fail with an error naming the
// group (PyTorch never sees this: Python ignores SIGPIPE). So a rank ignores
// it, unless the program has its own handler, which is kept.
void ignore_sigpipe_unless_handled() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL &&
      !(current.sa_flags & SA_SIGINFO)) {
    signal(SIGPIPE, SIG_IGN);
  }
}

c10::intrusive_ptr<CollectiveBackend> make_process_group(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, const RuntimeOptions& opts,
    const std::string& hostname) {
  if (opts.device().is_cuda()) {
#ifdef SPDIT_WITH_NCCL
    auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
    nccl_opts->timeout = opts.timeout();
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_opts);
#else
    throw std::runtime_error(
        "spdit: a CUDA device was requested but this spdit was built against a LibTorch "
        "without CUDA/NCCL; use the CPU device (Gloo) or rebuild against a CUDA LibTorch");
#endif
  }
  auto gloo_opts = c10d::ProcessGroupGloo::Options::create(opts.timeout());
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_opts);
}

// Each rank announces itself in the store; a rank that does not within the
// timeout is named, instead of the whole job blocking inside a backend.
void announce_and_wait_for_peers(c10d::Store& store, const std::string& prefix, int rank, int size,
                                 std::chrono::milliseconds timeout) {
  store.set(prefix + "/joined/" + std::to_string(rank), std::vector<uint8_t>{1});
  std::vector<std::string> keys;
  for (int r = 0; r < size; ++r) keys.push_back(prefix + "/joined/" + std::to_string(r));
  try {
    store.wait(keys, timeout);
  } catch (const std::exception&) {
    std::vector<int> missing;
    for (int r = 0; r < size; ++r) {
      if (!store.check({keys[r]})) missing.push_back(r);
    }
    std::ostringstream os;
    os << "spdit: rank " << rank << ": rank(s) [" << join_ints(missing)
       << "] did not join the job within " << timeout.count() / 1000.0
       << " s; check that every rank was started with the same WORLD_SIZE and "
          "MASTER_ADDR:MASTER_PORT, or give them longer: SPDIT_TIMEOUT=SECONDS in the "
          "environment, or `spdit launch --timeout SECONDS`";
    throw std::runtime_error(os.str());
  }
}

std::string hb_key(int rank) { return "spdit/heartbeat/" + std::to_string(rank); }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Said before any connection is tried: an unresolvable name otherwise shows
// as a rank that cannot reach the store until the timeout.
void check_resolves(const std::string& addr) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(addr.c_str(), nullptr, &hints, &res);
  if (res) freeaddrinfo(res);
  if (rc != 0) {
    throw std::runtime_error(
        "spdit: MASTER_ADDR='" + addr + "' does not resolve (" + gai_strerror(rc) +
        "); set it to node 0's host name or IP address (`spdit launch --master-addr`)");
  }
}

// The job's identity (SPDIT_JOB_ID from `spdit launch`, or torchrun's
// TORCHELASTIC_RUN_ID): rank 0 writes its own into the store it hosts; every
// other rank compares before it joins, so a rank of another job that reached
// this store through the same port is refused instead of taking a place.
std::string job_id_from_env() {
  for (const char* name : {"SPDIT_JOB_ID", "TORCHELASTIC_RUN_ID"}) {
    if (const char* v = std::getenv(name); v && *v) return v;
  }
  return "";
}

void check_same_job(c10d::Store& store, int rank, const std::string& where,
                    std::chrono::milliseconds timeout) {
  const std::string mine = job_id_from_env();
  const std::string key = "spdit/job_id";
  if (rank == 0) {
    store.set(key, std::vector<uint8_t>(mine.begin(), mine.end()));
    return;
  }
  try {
    store.wait({key}, timeout);
  } catch (const std::exception&) {
    throw std::runtime_error("spdit: rank " + std::to_string(rank) + ": the store at " + where +
                             " never said which job it serves within " +
                             std::to_string(timeout.count() / 1000.0) +
                             " s; is rank 0 of this job, or another program, on that port?");
  }
  const auto got = store.get(key);
  const std::string theirs(got.begin(), got.end());
  if (theirs != mine) {
    auto shown = [](const std::string& id) {
      return id.empty() ? std::string("(none)") : "'" + id + "'";
    };
    throw std::runtime_error(
        "spdit: rank " + std::to_string(rank) + " of job " + shown(mine) +
        " reached the rendezvous store at " + where + " of another job, " + shown(theirs) +
        ": two jobs use the same MASTER_PORT; give each job its own port (leave "
        "`spdit launch --master-port` out to get a free one)");
  }
}

}  // namespace

struct Liveness::Beat {
  std::mutex mutex;
  std::condition_variable cv;
  bool stop = false;
  std::thread thread;
};

Liveness::Liveness(c10::intrusive_ptr<c10d::Store> store, int rank)
    : store_(std::move(store)), rank_(rank), beat_(std::make_unique<Beat>()) {}

void Liveness::start() {
  beat_->thread = std::thread([this] {
    std::unique_lock<std::mutex> lock(beat_->mutex);
    while (!beat_->stop) {
      try {
        store_->add(hb_key(rank_), 1);
      } catch (...) {
        return;  // the store is gone (its host died): nothing left to tell
      }
      beat_->cv.wait_for(lock, std::chrono::milliseconds(500));
    }
  });
}

Liveness::~Liveness() {
  {
    std::lock_guard<std::mutex> lock(beat_->mutex);
    beat_->stop = true;
  }
  beat_->cv.notify_all();
  if (beat_->thread.joinable()) beat_->thread.join();
}

void Liveness::announce_leaving() const {
  try {
    store_->set("spdit/left/" + std::to_string(rank_), std::vector<uint8_t>{1});
  } catch (...) {
  }
}

std::vector<int> Liveness::stopped(const std::vector<int>& ranks, std::vector<int>& left,
                                   bool& store_lost) const {
  store_lost = false;
  left.clear();
  std::vector<int64_t> first;
  try {
    for (int r : ranks) first.push_back(store_->add(hb_key(r), 0));
    const int64_t own = store_->add(hb_key(rank_), 0);
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    // On a loaded machine a live rank's heartbeat thread may not have run in
    // 1.5 s; this rank's own beating twice shows that heartbeat threads did
    // get the CPU, so a peer that did not beat is not merely starved.
    while (store_->add(hb_key(rank_), 0) - own < 2 &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::vector<int> out;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] == rank_) continue;
      // A rank that recorded an error of its own is alive (or was, and left
      // because of what it saw): never the cause.
      if (store_->check({"spdit/left/" + std::to_string(ranks[i])})) {
        left.push_back(ranks[i]);
      } else if (store_->add(hb_key(ranks[i]), 0) == first[i]) {
        out.push_back(ranks[i]);
      }
    }
    return out;
  } catch (...) {
    store_lost = true;
    return {};
  }
}

double timeout_from_env() {
  const char* t = std::getenv("SPDIT_TIMEOUT");
  if (!t || !*t) return 0;
  size_t used = 0;
  double seconds = 0;
  try {
    seconds = std::stod(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  // A year: beyond it the milliseconds overflow, and no wait is meant.
  if (used == 0 || used != std::strlen(t) || !std::isfinite(seconds) || seconds <= 0 ||
      seconds > 3.2e7) {
    throw std::runtime_error(std::string("spdit: SPDIT_TIMEOUT='") + t +
                             "' is not a positive number of seconds (up to a year); set it like "
                             "SPDIT_TIMEOUT=300, or unset it for the default of 300 s");
  }
  return seconds;
}

RuntimeOptions::RuntimeOptions() : timeout_(std::chrono::seconds(300)) {
  if (const double seconds = timeout_from_env(); seconds > 0) {
    timeout_ = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
}

int Group::rank() const { return impl().rank; }
int Group::size() const { return static_cast<int>(impl().ranks.size()); }
const std::vector<int>& Group::ranks() const { return impl().ranks; }
const std::string& Group::name() const { return impl().name; }
Group::Impl& Group::impl() const {
  if (!impl_) throw std::logic_error("spdit: use of an uninitialised Group");
  return *impl_;
}

struct World::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  std::string hostname = "127.0.0.1";
  RuntimeOptions options;
  std::unique_ptr<CommCounters> counters = std::make_unique<CommCounters>();
  Group world;
  // Subgroups live as long as the World: a member that destroyed its end of a
  // group while a peer still used it would close sockets under that peer.
  std::vector<std::shared_ptr<Group::Impl>> subgroups;
  std::shared_ptr<Liveness> liveness;
  int generation = 0;
};

World::World(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  ignore_sigpipe_unless_handled();
  impl_->liveness = std::make_shared<Liveness>(impl_->store, impl_->rank);
  announce_and_wait_for_peers(*impl_->store, "world", impl_->rank, impl_->size,
                              impl_->options.timeout());
  std::vector<int> all(impl_->size);
  for (int r = 0; r < impl_->size; ++r) all[r] = r;
  auto g = std::make_shared<Group::Impl>();
  g->pg = make_process_group(c10::make_intrusive<c10d::PrefixStore>("world/pg", impl_->store),
                             impl_->rank, impl_->size, impl_->options, impl_->hostname);
  g->ranks = all;
  g->rank = impl_->rank;
  g->name = "world";
  g->counters = impl_->counters.get();
  g->timeout = impl_->options.timeout();
  g->liveness = impl_->liveness;
  impl_->world = Group(g);
  impl_->liveness->start();
}

World::~World() {
  if (g_current_world == this) g_current_world = nullptr;
}

int World::rank() const { return impl_->rank; }
int World::size() const { return impl_->size; }
int World::local_rank() const { return impl_->local_rank; }
const Group& World::group() const { return impl_->world; }
const RuntimeOptions& World::options() const { return impl_->options; }
CommCounters& World::counters() const { return *impl_->counters; }
int World::next_generation() { return impl_->generation++; }

Group World::new_group(const std::vector<int>& ranks, const std::string& name) {
  int me = -1;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (ranks[i] < 0 || ranks[i] >= impl_->size) {
      throw std::invalid_argument("spdit: group '" + name + "' names rank " +
                                  std::to_string(ranks[i]) + " outside the world of size " +
                                  std::to_string(impl_->size));
    }
    if (ranks[i] == impl_->rank) me = static_cast<int>(i);
  }
  if (me < 0) {
    throw std::invalid_argument("spdit: rank " + std::to_string(impl_->rank) +
                                " asked to build group '" + name + "' [" + join_ints(ranks) +
                                "] it is not a member of");
  }
  auto store = c10::make_intrusive<c10d::PrefixStore>("group/" + name, impl_->store);
  announce_and_wait_for_peers(*store, "", me, static_cast<int>(ranks.size()),
                              impl_->options.timeout());
  auto g = std::make_shared<Group::Impl>();
  g->pg = make_process_group(c10::make_intrusive<c10d::PrefixStore>("pg", store), me,
                             static_cast<int>(ranks.size()), impl_->options, impl_->hostname);
  g->ranks = ranks;
  g->rank = me;
  g->name = name;
  g->counters = impl_->counters.get();
  g->timeout = impl_->options.timeout();
  g->liveness = impl_->liveness;
  // Every member has finished connecting before anyone uses or drops it.
  wait_work(*g, g->pg->barrier(), "barrier after creating the group");
  impl_->subgroups.push_back(g);
  return Group(g);
}

void World::barrier() {
  auto& g = impl_->world.impl();
  wait_work(g, g.pg->barrier(), "barrier");
}

void wait_work(const Group::Impl& g, const c10::intrusive_ptr<c10d::Work>& work, const char* op) {
  try {
    work->wait(g.timeout);
  } catch (const std::exception& e) {
    std::ostringstream os;
    os << "spdit: " << op << " on group '" << g.name << "' (global ranks [" << join_ints(g.ranks)
       << "]) failed on global rank " << g.ranks[g.rank] << ": ";
    bool store_lost = false;
    std::vector<int> left;
    // Recorded before looking at the peers: a peer that looks now must see
    // this rank as one that failed because of what it saw, not as the cause.
    if (g.liveness) g.liveness->announce_leaving();
    auto stopped = g.liveness ? g.liveness->stopped(g.ranks, left, store_lost) : std::vector<int>{};
    if (!stopped.empty()) {
      os << "rank(s) [" << join_ints(stopped)
         << "] stopped (no heartbeat, no error of their own recorded); they died or exited early";
      if (!left.empty()) os << " (rank(s) [" << join_ints(left) << "] failed after them)";
    } else if (store_lost) {
      os << "rank 0, which hosts the rendezvous store, is gone (it died or exited early)";
    } else {
      // No rank is known dead: a wait that timed out everywhere, or a rank
      // whose own error came first; those that recorded one are named.
      os << "a peer died, exited early or did not answer within " << g.timeout.count() / 1000.0
         << " s";
      if (!left.empty())
        os << " (rank(s) [" << join_ints(left) << "] failed too; their errors say why)";
    }
    std::string backend = e.what();
    os << ". Backend said: " << backend.substr(0, backend.find('\n'));
    throw std::runtime_error(os.str());
  }
}

bool launched_by_launcher() {
  return std::getenv("RANK") != nullptr && std::getenv("WORLD_SIZE") != nullptr;
}

std::shared_ptr<World> init_from_env(const RuntimeOptions& options) {
  auto impl = std::make_unique<World::Impl>();
  impl->rank = parse_int_env("RANK", env_or_throw("RANK"));
  fault_point("rendezvous", impl->rank);
  impl->size = parse_int_env("WORLD_SIZE", env_or_throw("WORLD_SIZE"));
  const char* lr = std::getenv("LOCAL_RANK");
  impl->local_rank = lr && *lr ? parse_int_env("LOCAL_RANK", lr) : 0;
  std::string addr = env_or_throw("MASTER_ADDR");
  int port = parse_int_env("MASTER_PORT", env_or_throw("MASTER_PORT"));
  if (impl->size < 1 || impl->rank < 0 || impl->rank >= impl->size) {
    throw std::runtime_error("spdit: RANK=" + std::to_string(impl->rank) +
                             " is not in [0, WORLD_SIZE=" + std::to_string(impl->size) + ")");
  }
  if (port <= 0 || port > 65535) {
    throw std::runtime_error("spdit: MASTER_PORT=" + std::to_string(port) + " is not a TCP port");
  }
  impl->options = options;
  check_resolves(addr);
  impl->hostname = is_loopback(addr) ? "127.0.0.1" : addr;
  if (!is_loopback(addr)) {
    // Peers reach this rank at its own host name; Gloo resolves it.
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) == 0) impl->hostname = host;
  }
  ignore_sigpipe_unless_handled();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = impl->rank == 0;
  so.numWorkers = impl->size;
  so.waitWorkers = false;  // we wait ourselves, to name a missing rank
  so.timeout = options.timeout();
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  } catch (const std::exception& e) {
    const std::string why = first_line(e.what());
    if (impl->rank == 0 && why.find("ddress already in use") != std::string::npos) {
      throw std::runtime_error(
          "spdit: rank 0 cannot host the rendezvous store: port " + std::to_string(port) +
          " (MASTER_PORT) is in use, by another job's store or another program; give "
          "each job its own port (`spdit launch` picks a free one when --master-port "
          "is left out)");
    }
    throw std::runtime_error("spdit: rank " + std::to_string(impl->rank) +
                             " could not reach the rendezvous store at " + addr + ":" +
                             std::to_string(port) + " within " +
                             std::to_string(options.timeout().count() / 1000.0) +
                             " s (is rank 0 running, and the port free?): " + why);
  }
  check_same_job(*impl->store, impl->rank, addr + ":" + std::to_string(port), options.timeout());
  auto world = std::make_shared<World>(std::move(impl));
  set_current_world(world.get());
  return world;
}

void run_in_process(int world_size, const std::function<void(World&)>& fn,
                    const RuntimeOptions& options) {
  if (world_size < 1) {
    throw std::invalid_argument("spdit: run_in_process needs at least 1 rank, got " +
                                std::to_string(world_size));
  }
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::mutex mutex;
  std::exception_ptr first;
  int first_rank = -1;
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto impl = std::make_unique<World::Impl>();
        impl->store = store;
        impl->rank = r;
        impl->size = world_size;
        impl->options = options;
        World world(std::move(impl));
        set_current_world(&world);
        fn(world);
        // No rank tears its sockets down while a peer may still be reading.
        world.barrier();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first) {
          first = std::current_exception();
          first_rank = r;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) {
    try {
      std::rethrow_exception(first);
    } catch (const c10::Error& e) {
      throw std::runtime_error("rank " + std::to_string(first_rank) + ": " +
                               e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(first_rank) + ": " + e.what());
    }
  }
}

World& current_world() {
  if (!g_current_world) {
    throw std::runtime_error(
        "spdit: no distributed runtime on this thread; call spdit::init_from_env() (under "
        "`spdit launch`/torchrun) or run inside spdit::run_in_process()");
  }
  return *g_current_world;
}

bool has_current_world() { return g_current_world != nullptr; }
void set_current_world(World* world) { g_current_world = world; }

}  // namespace spdit
