#include "spdit/plan/sp_config.h"

#include <stdexcept>
#include <string>

namespace spdit {

void SequenceParallelConfig::setup(int rank, int world_size, at::Device device) {
  World& world = current_world();
  if (rank != world.rank() || world_size != world.size()) {
    throw std::invalid_argument(
        "spdit: SequenceParallelConfig::setup(rank=" + std::to_string(rank) + ", world_size=" +
        std::to_string(world_size) + ") does not match the distributed runtime (rank " +
        std::to_string(world.rank()) + " of " + std::to_string(world.size()) + ")");
  }
  if (device.type() != world.options().device().type()) {
    throw std::invalid_argument("spdit: SequenceParallelConfig::setup on device " + device.str() +
                                " but the runtime was initialised for " +
                                world.options().device().str());
  }
  setup(world);
}

void SequenceParallelConfig::setup(World& world) {
  // Checked before any group exists, so a bad degree never leaves a
  // half-built layout behind.
  compute_rank_layout(world.rank(), world.size(), ulysses_degree, ring_degree, cfg_degree);
  state_ = std::make_shared<ParallelState>(world, ulysses_degree, ring_degree, cfg_degree);
}

const ParallelState& SequenceParallelConfig::state() const {
  if (!state_) {
    throw std::runtime_error(
        "spdit: SequenceParallelConfig is not set up; call setup(rank, world_size, device) "
        "(apply_sequence_parallel does this) before asking for ranks or groups");
  }
  return *state_;
}

int SequenceParallelConfig::get_rank() const { return state().layout().sp_rank; }
int SequenceParallelConfig::get_world_size() const { return state().sp_group().size(); }
int SequenceParallelConfig::get_ulysses_rank() const { return state().layout().ulysses_rank; }
int SequenceParallelConfig::get_ulysses_world_size() const { return state().ulysses_degree(); }
int SequenceParallelConfig::get_ring_rank() const { return state().layout().ring_rank; }
int SequenceParallelConfig::get_ring_world_size() const { return state().ring_degree(); }
int SequenceParallelConfig::get_cfg_rank() const { return state().layout().cfg_rank; }
int SequenceParallelConfig::get_cfg_world_size() const { return state().cfg_degree(); }

}  // namespace spdit
