#pragma once
// Helpers for tests that run one thread per rank.
#include <chrono>
#include <functional>

#include "spdit/plan/sp_config.h"
#include "spdit/runtime/world.h"

namespace spdit::test {

/// A short timeout, so a broken test fails instead of hanging CI.
inline RuntimeOptions test_runtime() { return RuntimeOptions().timeout(std::chrono::seconds(60)); }

inline void run_ranks(int n, const std::function<void(World&)>& fn) {
  run_in_process(n, fn, test_runtime());
}

/// Every (U, R) with U * R == n.
inline std::vector<std::pair<int, int>> factorizations(int n) {
  std::vector<std::pair<int, int>> out;
  for (int u = 1; u <= n; ++u) {
    if (n % u == 0) out.emplace_back(u, n / u);
  }
  return out;
}

}  // namespace spdit::test
