// `spdit explain` and `spdit run` on the plan's side of issue 18: real processes.
#include <gtest/gtest.h>

#include <string>

#include "support/subprocess.h"

namespace {

const std::string kSpdit = SPDIT_BIN;

}  // namespace

// skip_sp cross-attention runs locally on all its heads: no Ulysses, so no
// head padding and no advice about it; the self-attention does get it.
TEST(PlanCli, ExplainAdvisesHeadPaddingOnlyForShardedAttention) {
  auto r = spdit::test::run_command(kSpdit +
                                    " explain --model wan --preset tiny --ulysses 8 --height 128 "
                                    "--width 128 2>&1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("note: blocks.*.attn1 (self): 4 heads do not divide by ulysses 8"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("attn2 (cross, skip_sp): 4 heads"), std::string::npos) << r.output;
  // The text fingerprint is part of the prediction.
  EXPECT_NE(r.output.find("metadata: 168 bytes"), std::string::npos) << r.output;
}

// Wan's plan skips the per-token timestep split by expected_dims on purpose:
// no warning on any rank, and the run's bytes still match the prediction.
TEST(PlanCli, WanRunPrintsNoWarningForItsIntendedSkip) {
  auto r = spdit::test::run_command(kSpdit +
                                    " run --model wan --preset tiny --nproc 2 --height 64 "
                                    "--width 64 --steps 1 2>&1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(match)"), std::string::npos) << r.output;
}
