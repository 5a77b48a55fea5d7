// `spdit layout`: prints where each rank sits, after proving each group works
// with a real collective.
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "commands.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/comm.h"
#include "validators.h"

namespace spdit::cli {
namespace {

std::string list(const std::vector<int>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << "]";
  return os.str();
}

// Every member reports its global rank; the group must be exactly who we think.
void check_group(const Group& g, const std::vector<int>& expected) {
  auto got = all_gather_ints(g, {static_cast<int64_t>(current_world().rank())});
  std::vector<int> members(got.begin(), got.end());
  if (members != expected) {
    throw std::runtime_error("group '" + g.name() + "' holds ranks " + list(members) +
                             ", expected " + list(expected));
  }
  auto ones = at::ones({1}, at::kLong);
  all_reduce_sum(g, ones);
  if (ones.item<int64_t>() != g.size()) {
    throw std::runtime_error("all_reduce on group '" + g.name() + "' summed to " +
                             std::to_string(ones.item<int64_t>()) + ", expected " +
                             std::to_string(g.size()));
  }
}

}  // namespace

void add_layout_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "layout", "Print each rank's CFG, SP, Ulysses and Ring placement (run under `spdit launch`)");
  static int ulysses = 1, ring = 1, cfg_degree = 1;
  cmd->add_option("--ulysses", ulysses, "Ulysses degree U")->check(whole_number(1));
  cmd->add_option("--ring", ring, "Ring degree R")->check(whole_number(1));
  cmd->add_option("--cfg", cfg_degree, "CFG degree (1 or 2), the outermost axis")
      ->check(CLI::IsMember({1, 2}));
  cmd->callback([&action] {
    action = [] {
      auto world = init_from_env();
      SequenceParallelConfig cfg;
      cfg.ulysses_degree = ulysses;
      cfg.ring_degree = ring;
      cfg.cfg_degree = cfg_degree;
      cfg.setup(world->rank(), world->size(), at::kCPU);
      const auto& st = cfg.state();
      check_group(st.sp_group(), st.layout().sp_group);
      check_group(st.ulysses_group(), st.layout().ulysses_group);
      check_group(st.ring_group(), st.layout().ring_group);
      check_group(st.cfg_group(), st.layout().cfg_group);
      std::cout << "rank=" << world->rank() << " cfg_rank=" << cfg.get_cfg_rank()
                << " sp_rank=" << cfg.get_rank() << " ulysses_rank=" << cfg.get_ulysses_rank()
                << " ring_rank=" << cfg.get_ring_rank()
                << " ulysses_group=" << list(st.layout().ulysses_group)
                << " ring_group=" << list(st.layout().ring_group)
                << " cfg_group=" << list(st.layout().cfg_group) << std::endl;
      world->barrier();
      return 0;
    };
  });
}

}  // namespace spdit::cli
