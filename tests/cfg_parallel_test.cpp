// CFG parallel: the world as cfg x ulysses x ring, and guidance whose two
// branches run at once on the two halves giving the serial result.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/pipeline.h"
#include "spdit/pipelines/guidance.h"
#include "spdit/runtime/parallel_state.h"
#include "support/ranks.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using namespace spdit::models;

TEST(CfgLayout, CfgIsTheOuterAxisAroundEveryFactorization) {
  for (int sp : {1, 2, 4}) {
    for (auto [u, r] : test::factorizations(sp)) {
      const int n = 2 * sp;
      for (int g = 0; g < n; ++g) {
        auto l = compute_rank_layout(g, n, u, r, 2);
        EXPECT_EQ(g, l.cfg_rank * sp + l.sp_rank);
        EXPECT_EQ(l.sp_rank, l.ring_rank * u + l.ulysses_rank);
        ASSERT_EQ(l.cfg_group.size(), 2u);
        EXPECT_EQ(l.cfg_group[0], l.sp_rank);
        EXPECT_EQ(l.cfg_group[1], sp + l.sp_rank);
        EXPECT_EQ(l.ulysses_group[l.ulysses_rank], g);
        EXPECT_EQ(l.ring_group[l.ring_rank], g);
        for (int m : l.sp_group) EXPECT_EQ(m / sp, l.cfg_rank) << "an SP group stays in its half";
      }
    }
  }
  auto l = compute_rank_layout(5, 8, 2, 2, 2);
  EXPECT_EQ(l.cfg_rank, 1);
  EXPECT_EQ(l.ulysses_group, (std::vector<int>{4, 5}));
  EXPECT_EQ(l.ring_group, (std::vector<int>{5, 7}));
  EXPECT_EQ(l.cfg_group, (std::vector<int>{1, 5}));
  const auto three = test::error_of([] { compute_rank_layout(0, 6, 1, 2, 3); });
  EXPECT_NE(three.find("cfg_degree=3 must be 1 or 2"), std::string::npos) << three;
  const auto product = test::error_of([] { compute_rank_layout(0, 4, 2, 2, 2); });
  EXPECT_NE(
      product.find("cfg_degree * ulysses_degree * ring_degree = 2 * 2 * 2 = 8 but the world has 4"),
      std::string::npos)
      << product;
}

// Every layout of 2, 4 and 8 ranks with cfg 2 gives serial CFG's velocity
// on one rank; the combination is the same arithmetic on the same tensors.
TEST(CfgParallel, BranchesAtOnceMatchSerialGuidanceOnOneRank) {
  for (const auto& name : model_names()) {
    RunSize size{112, 144, name == "wan" ? 5 : 1, 9, 1};
    auto single = make_pipeline(name, "tiny", 3);
    auto x = single->prepare(size, 4);
    auto cond = single->velocity(x, 0.7);
    auto expected = pipelines::guided_velocity(*single, x, 0.7, 4.5, nullptr);
    EXPECT_GT((expected - cond).abs().max().item<double>(), 1e-3) << "guidance changed nothing";
    EXPECT_TRUE(at::equal(pipelines::guided_velocity(*single, x, 0.7, 1.0, nullptr), cond))
        << "scale 1: off";
    for (int sp : {1, 2, 4}) {
      for (auto [u, r] : test::factorizations(sp)) {
        double worst = 0;
        std::mutex m;
        test::run_ranks(2 * sp, [&](World& w) {
          auto pipe = make_pipeline(name, "tiny", 3);
          pipe->prepare(size, 4);
          SequenceParallelConfig cfg{u, r};
          cfg.cfg_degree = 2;
          cfg.setup(w);
          apply_sequence_parallel(pipe->model(), cfg);
          auto got = pipelines::guided_velocity(*pipe, x, 0.7, 4.5, &cfg.state());
          std::lock_guard<std::mutex> lock(m);
          worst = std::max(worst, (got - expected).abs().max().item<double>() /
                                      expected.abs().max().item<double>());
        });
        EXPECT_LE(worst, sp == 1 ? 0.0 : 1e-5)
            << name << " cfg 2 x ulysses " << u << " x ring " << r;
      }
    }
  }
}

// As separate processes: the command with --cfg 2 matches one rank's serial
// guidance (--check) and moves exactly the predicted bytes; serial guidance
// moves twice one forward's.
TEST(CfgParallel, RunWithCfgTwoAsSeparateProcesses) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  test::TempDir tmp;
  const std::string base =
      std::string(SPDIT_BIN) +
      " run --model qwen-image --preset tiny --height 64 --width 80 --text-len 7 --steps 2";
  auto par = test::run_command(base + " --cfg 2 --cfg-scale 4 --ulysses 2 --check --json " +
                               tmp.path + "/p.json");
  ASSERT_EQ(par.code, 0) << par.output;
  EXPECT_NE(
      par.output.find("4 rank(s) (cfg 2 x ulysses 2 x ring 1), guidance 4 (branches in parallel)"),
      std::string::npos)
      << par.output;
  EXPECT_NE(par.output.find("(match)"), std::string::npos) << par.output;
  EXPECT_NE(par.output.find("PASS"), std::string::npos) << par.output;
  auto serial = test::run_command(base + " --cfg-scale 4 --nproc 2 --json " + tmp.path + "/s.json");
  ASSERT_EQ(serial.code, 0) << serial.output;
  EXPECT_NE(serial.output.find("(match)"), std::string::npos) << serial.output;
  auto off = test::run_command(base + " --nproc 2 --json " + tmp.path + "/o.json");
  ASSERT_EQ(off.code, 0) << off.output;
  auto bytes = [&](const char* f) {
    return nlohmann::json::parse(
               std::ifstream(tmp.path + "/" + f))["comm_bytes_by_kind"]["all_to_all"]["sent"]
        .get<int64_t>();
  };
  EXPECT_EQ(bytes("s.json"), 2 * bytes("o.json"));
  auto odd = test::run_command(base + " --cfg 2 --cfg-scale 4 --nproc 3");
  EXPECT_NE(odd.code, 0);
  EXPECT_NE(odd.output.find("--cfg 2 splits the ranks in 2 halves, but there are 3"),
            std::string::npos)
      << odd.output;
}
