#pragma once
// Communication checks shared by the in-process and the multi-process tests:
// each builds rank-dependent inputs whose expected results are written out
// element by element, independent of the code under test.
#include <gtest/gtest.h>

#include "spdit/runtime/comm.h"

namespace spdit::test {

// Value of element (b, s, h, d) of rank r's input: unique across ranks.
inline float cell(int r, int64_t b, int64_t s, int64_t h, int64_t d) {
  return static_cast<float>(r * 100000 + b * 10000 + s * 100 + h * 10 + d);
}

inline at::Tensor make_bshd(int r, int64_t B, int64_t S, int64_t H, int64_t D) {
  auto t = at::empty({B, S, H, D}, at::kFloat);
  auto a = t.accessor<float, 4>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) a[b][s][h][d] = cell(r, b, s, h, d);
  return t;
}

/// Ulysses forward (scatter heads, gather sequence) and back, plus byte counts.
inline void check_all_to_all(const Group& g) {
  const int p = g.size(), r = g.rank();
  const int64_t B = 2, S = 3, Hl = 2, D = 4, H = Hl * p;
  auto x = make_bshd(r, B, S, H, D);
  auto before = g.size() > 0 ? current_world().counters().get("all_to_all") : CommBytes{};
  auto y = all_to_all(g, x, /*scatter=*/2, /*gather=*/1);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{B, S * p, Hl, D}));
  auto a = y.accessor<float, 4>();
  for (int j = 0; j < p; ++j)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t h = 0; h < Hl; ++h)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_EQ(a[b][j * S + s][h][d], cell(j, b, s, r * Hl + h, d))
                << "rank " << r << " from " << j;
  auto after = current_world().counters().get("all_to_all");
  const int64_t expected = x.numel() * 4 * (p - 1) / p;
  EXPECT_EQ(after.sent - before.sent, p > 1 ? expected : 0);
  EXPECT_EQ(after.received - before.received, p > 1 ? expected : 0);
  auto back = all_to_all(g, y, /*scatter=*/1, /*gather=*/2);
  EXPECT_TRUE(at::equal(back, x));
}

inline void check_all_gather(const Group& g) {
  const int p = g.size(), r = g.rank();
  // Equal sizes, gathered on dim 1.
  auto x = make_bshd(r, 1, 2, 3, 2);
  auto before = current_world().counters().get("all_gather");
  auto y = all_gather(g, x, 1);
  ASSERT_EQ(y.size(1), 2 * p);
  auto a = y.accessor<float, 4>();
  for (int j = 0; j < p; ++j)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t d = 0; d < 2; ++d) ASSERT_EQ(a[0][j * 2 + s][h][d], cell(j, 0, s, h, d));
  auto after = current_world().counters().get("all_gather");
  EXPECT_EQ(after.sent - before.sent, x.numel() * 4 * (p - 1));
  EXPECT_EQ(after.received - before.received, x.numel() * 4 * (p - 1));

  // Uneven: rank j holds j + 1 rows along dim 0.
  auto u = at::full({r + 1, 2}, static_cast<float>(r));
  auto v = all_gather_uneven(g, u, 0);
  ASSERT_EQ(v.size(0), p * (p + 1) / 2);
  int64_t row = 0;
  for (int j = 0; j < p; ++j)
    for (int k = 0; k <= j; ++k, ++row) ASSERT_EQ(v[row][1].item<float>(), static_cast<float>(j));
}

inline void check_ring_exchange(const Group& g) {
  const int p = g.size(), r = g.rank();
  auto k = make_bshd(r, 1, 2, 2, 2);
  auto v = k * -1;
  auto before = current_world().counters().get("ring_exchange");
  RingExchange step(g, {k, v});
  auto got = step.wait();
  const int prev = (r - 1 + p) % p;
  EXPECT_TRUE(at::equal(got[0], make_bshd(prev, 1, 2, 2, 2)));
  EXPECT_TRUE(at::equal(got[1], make_bshd(prev, 1, 2, 2, 2) * -1));
  auto after = current_world().counters().get("ring_exchange");
  EXPECT_EQ(after.sent - before.sent, p > 1 ? 2 * k.numel() * 4 : 0);
  // A full turn of the ring brings every rank its own block back.
  std::vector<at::Tensor> cur{k};
  for (int i = 0; i < p; ++i) cur = RingExchange(g, cur).wait();
  EXPECT_TRUE(at::equal(cur[0], k));
}

inline void check_all_comm(const Group& g) {
  check_all_to_all(g);
  check_all_gather(g);
  check_ring_exchange(g);
}

}  // namespace spdit::test
