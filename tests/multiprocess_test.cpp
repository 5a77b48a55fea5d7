// Runs as one rank of a job started by `spdit launch`: the same checks as the
// in-process tests, over TCPStore and real processes.
#include <gtest/gtest.h>

#include "spdit/hooks/sequence_parallel.h"
#include "spdit/runtime/parallel_state.h"
#include "support/attention_checks.h"
#include "support/comm_checks.h"
#include "support/ranks.h"
#include "support/toy_models.h"
#include "support/user_models.h"

using namespace spdit;

namespace {
std::shared_ptr<World> g_world;
}

TEST(MultiProcessRuntime, WorldGroupCommunication) { test::check_all_comm(g_world->group()); }

TEST(MultiProcessRuntime, SubgroupsOfEveryFactorization) {
  for (auto [u, r] : test::factorizations(g_world->size())) {
    ParallelState st(*g_world, u, r);
    EXPECT_EQ(st.ring_group().ranks(), st.layout().ring_group);
    test::check_all_comm(st.ulysses_group());
    test::check_all_comm(st.ring_group());
  }
}

TEST(MultiProcessPlan, ReferenceExampleMatchesSingleRankEvenAndPadded) {
  for (int64_t s : {int64_t{8} * g_world->size(), int64_t{8} * g_world->size() + 1}) {
    test::ExampleInputs in(s);
    auto single = test::make_example_model(/*auto_pad=*/true);
    auto expected = single->call({in.hidden, in.context, in.positions}).tensor();
    auto m = test::make_example_model(/*auto_pad=*/true);
    apply_sequence_parallel(*m, SequenceParallelConfig{1, g_world->size()});
    auto y = m->call({in.hidden, in.context, in.positions}).tensor();
    ASSERT_EQ(y.sizes(), expected.sizes());
    // fp32 rounding: GEMMs over shards of other row counts round differently
    // (a few ulp of the largest output), so the bound scales with it.
    const double scale = expected.abs().max().item<double>();
    EXPECT_LE((y - expected).abs().max().item<double>(), 1e-6 * std::max(1.0, scale)) << "S=" << s;
    remove_sequence_parallel(*m);
  }
}

// A user's SD3-style model: right with the right plan; a plan that splits the
// joint text fails on every rank with the diagnosis, never a wrong result.
TEST(MultiProcessPlan, UserJointDitRightOrLoud) {
  test::UserInputs in;
  test::JointDit single;
  test::seed_parameters(single, 21);
  auto expected = single->call({in.hidden, in.text}).tensor();
  for (auto mistake : {test::Mistake::kNone, test::Mistake::kSplitTextPadded}) {
    test::JointDit m(mistake);
    test::seed_parameters(m, 21);
    apply_sequence_parallel(*m, SequenceParallelConfig{1, g_world->size()});
    if (mistake == test::Mistake::kNone) {
      auto y = m->call({in.hidden, in.text}).tensor();
      EXPECT_LE((y - expected).abs().max().item<double>(), 1e-5);
    } else {
      try {
        m->call({in.hidden, in.text});
        ADD_FAILURE() << "a split text gave a result";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("differs between the SP ranks"), std::string::npos)
            << e.what();
      }
    }
    remove_sequence_parallel(*m);
  }
}

TEST(MultiProcessAttention, HybridUlyssesTwoTimesRingMatchesSingleDevice) {
  ASSERT_EQ(g_world->size() % 2, 0) << "needs an even number of ranks";
  SequenceParallelConfig cfg{2, g_world->size() / 2};
  cfg.setup(*g_world);
  for (const auto& c : test::attention_grid(g_world->size())) test::check_attention_case(cfg, c);
}

TEST(MultiProcessAttention, RingWithPaddingMatchesSingleDevice) {
  SequenceParallelConfig cfg{1, g_world->size()};
  cfg.setup(*g_world);
  test::AttnCase c;
  c.seq = 4 * g_world->size() + 1;  // auto_pad pads, the ring carries the mask
  c.heads = 3;
  for (int64_t text : {int64_t{0}, int64_t{5}}) {
    c.text = text;
    test::check_attention_case(cfg, c);
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // --early-exit-rank=K: rank K leaves at once with code 0, so the launcher
  // test can check that its peers fail within the timeout instead of hanging.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--early-exit-rank=", 0) == 0 && std::getenv("RANK") &&
        std::stoi(a.substr(18)) == std::atoi(std::getenv("RANK"))) {
      return 0;
    }
  }
  g_world = init_from_env();
  int rc = RUN_ALL_TESTS();
  g_world->barrier();
  g_world.reset();
  return rc;
}
