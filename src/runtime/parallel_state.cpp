#include "spdit/runtime/parallel_state.h"

#include <stdexcept>
#include <string>

namespace spdit {

RankLayout compute_rank_layout(int rank, int world_size, int u, int r, int cfg) {
  if (u < 1 || r < 1) {
    throw std::invalid_argument("spdit: ulysses_degree=" + std::to_string(u) + " and ring_degree=" +
                                std::to_string(r) + " must both be at least 1");
  }
  if (cfg != 1 && cfg != 2) {
    throw std::invalid_argument(
        "spdit: cfg_degree=" + std::to_string(cfg) +
        " must be 1 or 2: guidance has two branches (conditional, unconditional)");
  }
  if (cfg > 1 && cfg * u * r != world_size) {
    throw std::invalid_argument(
        "spdit: cfg_degree * ulysses_degree * ring_degree = " + std::to_string(cfg) + " * " +
        std::to_string(u) + " * " + std::to_string(r) + " = " + std::to_string(cfg * u * r) +
        " but the world has " + std::to_string(world_size) +
        " ranks; choose degrees whose product is " + std::to_string(world_size) + " (or start " +
        std::to_string(cfg * u * r) + " ranks)");
  }
  if (u * r * cfg != world_size) {
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
  const int sp = u * r;
  RankLayout l;
  l.cfg_rank = rank / sp;
  l.sp_rank = rank % sp;
  l.ulysses_rank = l.sp_rank % u;
  l.ring_rank = l.sp_rank / u;
  const int base = l.cfg_rank * sp;
  for (int i = 0; i < sp; ++i) l.sp_group.push_back(base + i);
  for (int i = 0; i < u; ++i) l.ulysses_group.push_back(base + l.ring_rank * u + i);
  for (int i = 0; i < r; ++i) l.ring_group.push_back(base + i * u + l.ulysses_rank);
  for (int i = 0; i < cfg; ++i) l.cfg_group.push_back(i * sp + l.sp_rank);
  return l;
}

ParallelState::ParallelState(World& world, int ulysses_degree, int ring_degree, int cfg_degree)
    : world_(&world),
      ulysses_degree_(ulysses_degree),
      ring_degree_(ring_degree),
      cfg_degree_(cfg_degree),
      layout_(compute_rank_layout(world.rank(), world.size(), ulysses_degree, ring_degree,
                                  cfg_degree)) {
  const std::string gen = "sp" + std::to_string(world.next_generation());
  // Without CFG the SP group is the world.
  sp_ = cfg_degree == 1
            ? world.group()
            : world.new_group(layout_.sp_group, gen + "/sp" + std::to_string(layout_.cfg_rank));
  ulysses_ =
      world.new_group(layout_.ulysses_group, gen + "/ulysses" + std::to_string(layout_.cfg_rank) +
                                                 "." + std::to_string(layout_.ring_rank));
  ring_ = world.new_group(layout_.ring_group, gen + "/ring" + std::to_string(layout_.cfg_rank) +
                                                  "." + std::to_string(layout_.ulysses_rank));
  cfg_ = world.new_group(layout_.cfg_group, gen + "/cfg" + std::to_string(layout_.sp_rank));
}

}  // namespace spdit
