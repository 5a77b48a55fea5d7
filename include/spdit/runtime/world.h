#pragma once
// One rank's distributed runtime: the world process group, how it was
// rendezvoused (torchrun environment or in-process threads), and subgroups.
// Every c10d type stays behind this header's pimpl, so the LibTorch 1.13 vs
// 2.x differences live in src/runtime only.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spdit/runtime/comm_counters.h"

namespace spdit {

/// How a World is built.
///
///   auto world = spdit::init_from_env(spdit::RuntimeOptions().timeout(std::chrono::seconds(30)));
struct RuntimeOptions {
  /// How long a collective or the rendezvous may wait for a peer before it
  /// fails with an error naming the peer(s). Default 300 s, or SPDIT_TIMEOUT
  /// (seconds) from the environment when set.
  RuntimeOptions& timeout(std::chrono::milliseconds t) {
    timeout_ = t;
    return *this;
  }
  /// CPU selects Gloo; CUDA selects NCCL (only in CUDA builds of LibTorch).
  RuntimeOptions& device(at::Device d) {
    device_ = d;
    return *this;
  }
  std::chrono::milliseconds timeout() const { return timeout_; }
  at::Device device() const { return device_; }

  RuntimeOptions();

 private:
  std::chrono::milliseconds timeout_;
  at::Device device_{at::kCPU};
};

/// SPDIT_TIMEOUT in seconds; 0 when it is unset. Anything but a positive,
/// finite number ("abc", "5x", "nan", "-1") is an error naming the variable.
double timeout_from_env();

/// A set of ranks that talk through one process group. `ranks()` are global
/// ranks in group order; `rank()` is this rank's index in it.
class Group {
 public:
  struct Impl;
  Group() = default;
  explicit Group(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  int rank() const;
  int size() const;
  const std::vector<int>& ranks() const;
  const std::string& name() const;
  bool valid() const { return impl_ != nullptr; }
  Impl& impl() const;

 private:
  std::shared_ptr<Impl> impl_;
};

/// This rank's view of the job.
class World {
 public:
  struct Impl;
  explicit World(std::unique_ptr<Impl> impl);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const;
  int size() const;
  /// LOCAL_RANK from the launcher (0 for in-process ranks).
  int local_rank() const;
  const Group& group() const;
  const RuntimeOptions& options() const;
  CommCounters& counters() const;

  /// Builds a subgroup. Only its members call this, every member with the same
  /// `ranks` and `name`; names must be unique within the World's lifetime.
  Group new_group(const std::vector<int>& ranks, const std::string& name);
  /// A fresh number, the same on every rank when every rank asks in the same
  /// order; used to keep subgroup names unique across repeated setups.
  int next_generation();
  void barrier();

 private:
  std::unique_ptr<Impl> impl_;
};

/// Joins the job described by torchrun's environment (RANK, WORLD_SIZE,
/// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) through a TCPStore on the master.
/// A missing variable, an unreachable master, or a rank that never joins is an
/// error that names it. The World becomes this thread's current world.
/// Making a World (here or in run_in_process) sets SIGPIPE to ignored when
/// it has its default action, so that a peer gone mid-write fails the
/// collective with an error instead of killing the process; a program's own
/// SIGPIPE handler is kept.
std::shared_ptr<World> init_from_env(const RuntimeOptions& options = RuntimeOptions());

/// True when the environment describes a launched job (RANK and WORLD_SIZE set).
bool launched_by_launcher();

/// Runs `fn` on `world_size` ranks, one thread each, over a shared in-process
/// store; each thread's current world is its rank's. Rethrows the first
/// exception any rank raised (prefixed with its rank) after all threads end.
void run_in_process(int world_size, const std::function<void(World&)>& fn,
                    const RuntimeOptions& options = RuntimeOptions());

/// The World of the calling thread; throws when none was initialised.
World& current_world();
bool has_current_world();
void set_current_world(World* world);

}  // namespace spdit
