// Real-size models without their memory, and checkpoints read as they ship.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "spdit/models/flux.h"
#include "spdit/models/skeleton.h"
#include "spdit/models/wan.h"

using namespace spdit;
using namespace spdit::models;

namespace {

// Resident set of this process, from /proc (kB -> bytes).
int64_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

int64_t parameter_bytes(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel() * p.element_size();
  return n;
}

}  // namespace

TEST(Skeleton, FullSizeFluxAndWanTakeNoResidentMemory) {
  const int64_t before = resident_bytes();
  SkeletonScope skeleton;
  FluxTransformer flux(FluxConfig::preset("full"));
  WanTransformer wan(WanConfig::preset("full"));
  const int64_t grew = resident_bytes() - before;
  // Flux.1-dev has ~11.9 billion parameters (47.6 GB in fp32), Wan2.1 1.3B ~1.4 billion.
  EXPECT_GT(parameter_bytes(*flux), int64_t{44} * 1000 * 1000 * 1000);
  EXPECT_GT(parameter_bytes(*wan), int64_t{5} * 1000 * 1000 * 1000);
  EXPECT_LT(grew, int64_t{400} * 1000 * 1000) << "resident grew by " << grew << " bytes";
  // Lazy pages read as zeros and take memory where written.
  auto t = lazy_empty({1024, 1024}, at::kFloat);
  EXPECT_EQ(t.abs().sum().item<double>(), 0.0);
  t.fill_(1.0);
  EXPECT_EQ(t.sum().item<double>(), 1024.0 * 1024.0);
}
