#include "spdit/runtime/parallel_state.h"

#include <stdexcept>
#include <string>

namespace spdit {

RankLayout compute_rank_layout(int rank, int world_size, int u, int r) {
  if (u < 1 || r < 1) {
    throw std::invalid_argument("spdit: ulysses_degree=" + std::to_string(u) +
                                " and ring_degree=" + std::to_string(r) +
                                " must both be at least 1");
  }
  if (u * r != world_size) {
    throw std::invalid_argument(
        "spdit: ulysses_degree * ring_degree = " + std::to_string(u) + " * " + std::to_string(r) +
        " = " + std::to_string(u * r) + " but the sequence-parallel world has " +
        std::to_string(world_size) + " ranks; choose degrees whose product is " +
        std::to_string(world_size) + " (or start " + std::to_string(u * r) + " ranks)");
  }
  if (rank < 0 || rank >= world_size) {
    throw std::invalid_argument("spdit: rank " + std::to_string(rank) + " is outside [0, " +
                                std::to_string(world_size) + ")");
  }
  RankLayout l;
  l.sp_rank = rank;
  l.ulysses_rank = rank % u;
  l.ring_rank = rank / u;
  for (int i = 0; i < world_size; ++i) l.sp_group.push_back(i);
  for (int i = 0; i < u; ++i) l.ulysses_group.push_back(l.ring_rank * u + i);
  for (int i = 0; i < r; ++i) l.ring_group.push_back(i * u + l.ulysses_rank);
  return l;
}

ParallelState::ParallelState(World& world, int ulysses_degree, int ring_degree)
    : world_(&world),
      ulysses_degree_(ulysses_degree),
      ring_degree_(ring_degree),
      layout_(compute_rank_layout(world.rank(), world.size(), ulysses_degree, ring_degree)) {
  // Until other parallel axes exist the SP group is the world.
  sp_ = world.group();
  const std::string gen = "sp" + std::to_string(world.next_generation());
  ulysses_ = world.new_group(layout_.ulysses_group,
                             gen + "/ulysses" + std::to_string(layout_.ring_rank));
  ring_ = world.new_group(layout_.ring_group, gen + "/ring" + std::to_string(layout_.ulysses_rank));
}

}  // namespace spdit
