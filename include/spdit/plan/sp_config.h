#pragma once
// SequenceParallelConfig, as in the reference (diffusers' ContextParallelConfig).
#include <ATen/ATen.h>

#include <memory>

#include "spdit/runtime/parallel_state.h"

namespace spdit {

/// How many ranks do Ulysses (all-to-all) and Ring attention. U * R must be
/// the SP world size (the world, or each CFG branch's half of it); both > 1
/// is the hybrid (USP).
///
///   SequenceParallelConfig cfg{/*ulysses_degree=*/2, /*ring_degree=*/2};
///   cfg.setup(world.rank(), world.size(), at::kCPU);
struct SequenceParallelConfig {
  /// Explicit: apply_sequence_parallel(model, 4) must not read 4 as a config.
  explicit SequenceParallelConfig(int ulysses = 1, int ring = 1, bool fp32 = true)
      : ulysses_degree(ulysses), ring_degree(ring), convert_to_fp32(fp32) {}

  int ulysses_degree = 1;
  int ring_degree = 1;
  /// Merge ring partial outputs and LSE in fp32 whatever the input dtype.
  bool convert_to_fp32 = true;
  /// Classifier-free guidance branches run at once (1 or 2): the world is
  /// cfg x ulysses x ring, CFG outermost (parallel_state.h).
  int cfg_degree = 1;

  /// Builds the process groups on the calling thread's current World.
  /// `rank` and `world_size` must match it; degrees must multiply to it.
  void setup(int rank, int world_size, at::Device device);
  /// Same, on an explicit World.
  void setup(World& world);
  bool is_initialized() const { return state_ != nullptr; }

  int get_rank() const;
  int get_world_size() const;
  int get_ulysses_rank() const;
  int get_ulysses_world_size() const;
  int get_ring_rank() const;
  int get_ring_world_size() const;
  /// The guidance branch this rank computes (0: conditional) and how many
  /// run at once.
  int get_cfg_rank() const;
  int get_cfg_world_size() const;

  /// The groups; throws when setup() has not run.
  const ParallelState& state() const;

 private:
  std::shared_ptr<ParallelState> state_;
};

}  // namespace spdit
