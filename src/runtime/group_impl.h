#pragma once
// Private: what a Group holds. Only src/runtime includes c10d.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "spdit/runtime/comm_counters.h"
#include "spdit/runtime/world.h"

namespace spdit {

struct Group::Impl {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::vector<int> ranks;  // global ranks, in group order
  int rank = 0;            // index of this rank in `ranks`
  std::string name;
  CommCounters* counters = nullptr;
  std::chrono::milliseconds timeout{0};
};

/// Waits on c10d work; turns a backend failure into an error that names the
/// operation, the group, its ranks and the timeout, since a failed wait almost
/// always means a peer died or never arrived.
void wait_work(const Group::Impl& g, const c10::intrusive_ptr<c10d::Work>& work,
               const char* op);

}  // namespace spdit
