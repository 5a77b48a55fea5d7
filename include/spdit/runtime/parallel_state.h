#pragma once
// The rank layout of sequence parallelism (same as the anchors):
// sp_rank = ring_rank * U + ulysses_rank. Ulysses groups are contiguous
// ranks, ring groups are strided by U. Sequence shard k lives on sp_rank k.
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
};

/// Checks degrees (each >= 1, U * R == world_size) and returns the layout of
/// `rank`. Errors name the numbers.
RankLayout compute_rank_layout(int rank, int world_size, int ulysses_degree, int ring_degree);

/// The process groups of one rank's SP layout.
class ParallelState {
 public:
  /// Builds the SP, Ulysses and Ring groups of `world` (a collective over it).
  ParallelState(World& world, int ulysses_degree, int ring_degree);

  const RankLayout& layout() const { return layout_; }
  const Group& sp_group() const { return sp_; }
  const Group& ulysses_group() const { return ulysses_; }
  const Group& ring_group() const { return ring_; }
  int ulysses_degree() const { return ulysses_degree_; }
  int ring_degree() const { return ring_degree_; }
  World& world() const { return *world_; }

 private:
  World* world_;
  int ulysses_degree_;
  int ring_degree_;
  RankLayout layout_;
  Group sp_;
  Group ulysses_;
  Group ring_;
};

}  // namespace spdit
