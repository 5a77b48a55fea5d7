#include <gtest/gtest.h>

#include "spdit/plan/sp_config.h"
#include "support/ranks.h"

using namespace spdit;

TEST(SequenceParallelConfig, GettersBeforeSetupSaySetupIsMissing) {
  SequenceParallelConfig cfg;
  EXPECT_FALSE(cfg.is_initialized());
  try {
    cfg.get_rank();
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("setup"), std::string::npos);
  }
  EXPECT_THROW(cfg.get_world_size(), std::runtime_error);
  EXPECT_THROW(cfg.get_ulysses_rank(), std::runtime_error);
  EXPECT_THROW(cfg.get_ring_world_size(), std::runtime_error);
  EXPECT_TRUE(cfg.convert_to_fp32);
}

TEST(SequenceParallelConfig, SetupGivesTheLayoutForEveryFactorization) {
  for (int n : {1, 2, 4, 8}) {
    test::run_ranks(n, [n](World& w) {
      for (auto [u, r] : test::factorizations(n)) {
        SequenceParallelConfig cfg{u, r};
        cfg.setup(w.rank(), w.size(), at::kCPU);
        ASSERT_TRUE(cfg.is_initialized());
        EXPECT_EQ(cfg.get_world_size(), n);
        EXPECT_EQ(cfg.get_rank(), w.rank());
        EXPECT_EQ(cfg.get_ulysses_world_size(), u);
        EXPECT_EQ(cfg.get_ring_world_size(), r);
        EXPECT_EQ(cfg.get_ulysses_rank(), w.rank() % u);
        EXPECT_EQ(cfg.get_ring_rank(), w.rank() / u);
      }
    });
  }
}

TEST(SequenceParallelConfig, DegreesThatDoNotMultiplyToTheWorldAreRejected) {
  test::run_ranks(4, [](World& w) {
    SequenceParallelConfig cfg{2, 1};
    try {
      cfg.setup(w.rank(), w.size(), at::kCPU);
      FAIL();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("2 * 1 = 2"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(cfg.is_initialized());
    SequenceParallelConfig zero{0, 4};
    EXPECT_THROW(zero.setup(w), std::invalid_argument);
  });
}

TEST(SequenceParallelConfig, SetupWithAnotherRankOrSizeIsRejected) {
  test::run_ranks(2, [](World& w) {
    SequenceParallelConfig cfg{2, 1};
    EXPECT_THROW(cfg.setup(w.rank(), 4, at::kCPU), std::invalid_argument);
  });
}
