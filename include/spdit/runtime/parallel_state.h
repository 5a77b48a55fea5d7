#pragma once
// The rank layout of sequence parallelism (same as the anchors):
// sp_rank = ring_rank * U + ulysses_rank. Ulysses groups are contiguous
// ranks, ring groups are strided by U. Sequence shard k lives on sp_rank k.
// Classifier-free guidance is the outer axis: rank = cfg_rank * (U*R) +
// sp_rank, each CFG branch on its own SP group, and a CFG group holds the
// ranks of one sp_rank across the branches.
#include <vector>

#include "spdit/runtime/world.h"

namespace spdit {

/// Where one rank sits, computed without any communication.
struct RankLayout {
  int sp_rank = 0;
  int ulysses_rank = 0;
  int ring_rank = 0;
  std::vector<int> sp_group;       // global ranks
  std::vector<int> ulysses_group;  // global ranks, contiguous
  std::vector<int> ring_group;     // global ranks, strided by U
  int cfg_rank = 0;                // which guidance branch this rank computes
  std::vector<int> cfg_group;      // global ranks, strided by U*R
};

/// Checks degrees (each >= 1, cfg 1 or 2, cfg * U * R == world_size) and
/// returns the layout of `rank`. Errors name the numbers.
RankLayout compute_rank_layout(int rank, int world_size, int ulysses_degree, int ring_degree,
                               int cfg_degree = 1);

/// The process groups of one rank's SP layout.
class ParallelState {
 public:
  /// Builds the SP, Ulysses, Ring and CFG groups of `world` (a collective
  /// over it).
  ParallelState(World& world, int ulysses_degree, int ring_degree, int cfg_degree = 1);

  const RankLayout& layout() const { return layout_; }
  const Group& sp_group() const { return sp_; }
  const Group& ulysses_group() const { return ulysses_; }
  const Group& ring_group() const { return ring_; }
  const Group& cfg_group() const { return cfg_; }
  int ulysses_degree() const { return ulysses_degree_; }
  int ring_degree() const { return ring_degree_; }
  int cfg_degree() const { return cfg_degree_; }
  World& world() const { return *world_; }

 private:
  World* world_;
  int ulysses_degree_;
  int ring_degree_;
  int cfg_degree_;
  RankLayout layout_;
  Group sp_;
  Group ulysses_;
  Group ring_;
  Group cfg_;
};

}  // namespace spdit
