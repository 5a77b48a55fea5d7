#include <gtest/gtest.h>

#include "spdit/runtime/parallel_state.h"
#include "support/ranks.h"

using namespace spdit;

TEST(RankLayout, EveryFactorizationOf1248MatchesTheAnchors) {
  for (int n : {1, 2, 4, 8}) {
    for (auto [u, r] : test::factorizations(n)) {
      std::vector<int> seen_sp(n, 0);
      for (int g = 0; g < n; ++g) {
        auto l = compute_rank_layout(g, n, u, r);
        EXPECT_EQ(l.sp_rank, l.ring_rank * u + l.ulysses_rank);
        EXPECT_EQ(l.ulysses_rank, g % u);
        EXPECT_EQ(l.ring_rank, g / u);
        ASSERT_EQ(static_cast<int>(l.ulysses_group.size()), u);
        ASSERT_EQ(static_cast<int>(l.ring_group.size()), r);
        for (int i = 0; i < u; ++i) EXPECT_EQ(l.ulysses_group[i], (g / u) * u + i);
        for (int i = 0; i < r; ++i) EXPECT_EQ(l.ring_group[i], i * u + g % u);
        EXPECT_EQ(l.ulysses_group[l.ulysses_rank], g);
        EXPECT_EQ(l.ring_group[l.ring_rank], g);
        seen_sp[l.sp_rank]++;
      }
      for (int c : seen_sp) EXPECT_EQ(c, 1) << "sp ranks must be a permutation";
    }
  }
}

TEST(RankLayout, FourRanksTwoByTwo) {
  auto l0 = compute_rank_layout(0, 4, 2, 2);
  auto l3 = compute_rank_layout(3, 4, 2, 2);
  EXPECT_EQ(l0.ulysses_group, (std::vector<int>{0, 1}));
  EXPECT_EQ(l0.ring_group, (std::vector<int>{0, 2}));
  EXPECT_EQ(l3.ulysses_group, (std::vector<int>{2, 3}));
  EXPECT_EQ(l3.ring_group, (std::vector<int>{1, 3}));
}

TEST(RankLayout, EightRanksFourByTwo) {
  auto l5 = compute_rank_layout(5, 8, 4, 2);
  EXPECT_EQ(l5.ulysses_group, (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(l5.ring_group, (std::vector<int>{1, 5}));
  auto l2 = compute_rank_layout(2, 8, 4, 2);
  EXPECT_EQ(l2.ring_group, (std::vector<int>{2, 6}));
}

TEST(RankLayout, DegreeMismatchNamesTheNumbers) {
  try {
    compute_rank_layout(0, 4, 3, 1);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("3 * 1 = 3"), std::string::npos) << m;
    EXPECT_NE(m.find("4 ranks"), std::string::npos) << m;
  }
  EXPECT_THROW(compute_rank_layout(0, 4, 0, 4), std::invalid_argument);
  EXPECT_THROW(compute_rank_layout(0, 4, 4, -1), std::invalid_argument);
}
