#include <gtest/gtest.h>
#include <signal.h>

#include "spdit/runtime/comm.h"
#include "spdit/runtime/parallel_state.h"
#include "support/comm_checks.h"
#include "support/ranks.h"
#include "support/subprocess.h"

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

// A peer that has gone must not kill a rank by SIGPIPE (its default) when a
// socket write finds it gone: a rank ignores SIGPIPE, unless the program
// handles it itself. (ARankThatThrowsIsReportedWithItsNumber died so, once in
// many runs, on a loaded machine.)
static void mine_for_sigpipe(int) {}

TEST(RuntimeComm, ARankIgnoresSigpipeUnlessTheProgramHandlesIt) {
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &before), 0);
  signal(SIGPIPE, SIG_DFL);
  test::run_ranks(2, [](World&) {});
  struct sigaction now {};
  sigaction(SIGPIPE, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_IGN);

  signal(SIGPIPE, mine_for_sigpipe);
  test::run_ranks(2, [](World&) {});
  sigaction(SIGPIPE, nullptr, &now);
  EXPECT_EQ(now.sa_handler, &mine_for_sigpipe);
  sigaction(SIGPIPE, &before, nullptr);
}

TEST(RuntimeComm, NoWorldOnThisThreadIsAClearError) {
  try {
    current_world();
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("init_from_env"), std::string::npos);
  }
}

TEST(RuntimeComm, BroadcastBytesGivesEveryRankTheRootsMessage) {
  test::run_ranks(3, [](World& w) {
    const std::string mine =
        "from rank " + std::to_string(w.rank()) + std::string(1, '\0') + "tail";
    EXPECT_EQ(broadcast_bytes(w.group(), mine, 1), "from rank 1" + std::string(1, '\0') + "tail");
    EXPECT_EQ(broadcast_bytes(w.group(), w.rank() == 0 ? "" : "ignored"), "");
    auto t = at::full({2, 3}, static_cast<float>(w.rank()));
    broadcast(w.group(), t, 2);
    EXPECT_TRUE(at::equal(t, at::full({2, 3}, 2.0f)));
  });
}

TEST(RuntimeComm, BroadcastFromARankOutsideTheGroupIsAClearError) {
  test::run_ranks(2, [](World& w) {
    auto t = at::zeros({1});
    const std::string error = test::error_of([&] { broadcast(w.group(), t, 2); });
    EXPECT_NE(error.find("root 2 is not a rank of its 2"), std::string::npos) << error;
  });
}
