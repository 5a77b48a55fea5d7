#include <gtest/gtest.h>

#include "spdit/runtime/parallel_state.h"
#include "support/comm_checks.h"
#include "support/ranks.h"

using namespace spdit;

class RuntimeComm : public ::testing::TestWithParam<int> {};

TEST_P(RuntimeComm, WorldGroupMatchesHandComputedResults) {
  test::run_ranks(GetParam(), [](World& w) { test::check_all_comm(w.group()); });
}

TEST_P(RuntimeComm, UlyssesAndRingSubgroupsOfEveryFactorization) {
  const int n = GetParam();
  test::run_ranks(n, [n](World& w) {
    for (auto [u, r] : test::factorizations(n)) {
      ParallelState st(w, u, r);
      EXPECT_EQ(st.ulysses_group().ranks(), st.layout().ulysses_group);
      EXPECT_EQ(st.ring_group().ranks(), st.layout().ring_group);
      test::check_all_comm(st.ulysses_group());
      test::check_all_comm(st.ring_group());
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, RuntimeComm, ::testing::Values(1, 2, 3, 4, 8));

TEST(RuntimeComm, CountersResetAndTotal) {
  test::run_ranks(2, [](World& w) {
    w.counters().reset();
    auto x = at::ones({4, 4});
    all_gather(w.group(), x, 0);
    EXPECT_EQ(w.counters().total().sent, 64);
    EXPECT_EQ(w.counters().get("all_gather").calls, 1);
    w.counters().reset();
    EXPECT_EQ(w.counters().total().sent, 0);
  });
}

TEST(RuntimeComm, AllToAllRejectsIndivisibleScatterDim) {
  test::run_ranks(2, [](World& w) {
    EXPECT_THROW(all_to_all(w.group(), at::ones({1, 2, 3, 4}), 2, 1), std::invalid_argument);
  });
}

TEST(RuntimeComm, ARankThatThrowsIsReportedWithItsNumber) {
  try {
    test::run_ranks(2, [](World& w) {
      if (w.rank() == 1) throw std::runtime_error("boom");
    });
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1: boom"), std::string::npos) << e.what();
  }
}

TEST(RuntimeComm, NoWorldOnThisThreadIsAClearError) {
  try {
    current_world();
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("init_from_env"), std::string::npos);
  }
}
