#pragma once
// Private: what a Group holds. Only src/runtime includes c10d.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "torch_compat.h"
#if SPDIT_TORCH_AT_LEAST(2, 0)
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

#include <chrono>
#include <string>
#include <vector>

#include "spdit/runtime/comm_counters.h"
#include "spdit/runtime/world.h"

namespace spdit {

// What runs a group's collectives. LibTorch 2 split c10d::ProcessGroup into a
// dispatching front and per-device Backends (Gloo, NCCL); spdit makes one
// backend per group and calls it directly, as it called the 1.13 group.
#if SPDIT_TORCH_AT_LEAST(2, 0)
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

/// Heartbeats in the job's store: each rank bumps its counter twice a
/// second, so that after a failed collective the survivors can name the
/// rank(s) that stopped.
class Liveness {
 public:
  Liveness(c10::intrusive_ptr<c10d::Store> store, int rank);
  ~Liveness();
  void start();
  /// The ranks among `ranks` whose heartbeat did not move for ~1.5 s, less
  /// those that announced they left after an error of their own (`left`);
  /// an empty answer with `store_lost` set when the store itself is gone.
  std::vector<int> stopped(const std::vector<int>& ranks, std::vector<int>& left,
                           bool& store_lost) const;
  /// Tells the others that this rank is leaving because of an error it saw.
  void announce_leaving() const;

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  struct Beat;
  std::unique_ptr<Beat> beat_;
};

struct Group::Impl {
  c10::intrusive_ptr<CollectiveBackend> pg;
  std::vector<int> ranks;  // global ranks, in group order
  int rank = 0;            // index of this rank in `ranks`
  std::string name;
  CommCounters* counters = nullptr;
  std::chrono::milliseconds timeout{0};
  std::shared_ptr<Liveness> liveness;
};

/// Waits on c10d work; turns a backend failure into an error that names the
/// operation, the group, its ranks and the timeout, since a failed wait almost
/// always means a peer died or never arrived.
void wait_work(const Group::Impl& g, const c10::intrusive_ptr<c10d::Work>& work, const char* op);

}  // namespace spdit
