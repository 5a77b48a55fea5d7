// --parallel auto: the layout chosen from predicted step times, and the
// command choosing one, running it, and refusing flags that contradict it.
#include <gtest/gtest.h>
#include <unistd.h>

#include "auto_layout.h"
#include "support/subprocess.h"

using namespace spdit;
using namespace spdit::cli;

namespace {

// One kind of sharded attention, `count` per forward.
models::ForwardShapes shapes_of(int64_t tokens, int64_t heads, int64_t text = 0) {
  models::ForwardShapes s;
  s.tokens = tokens;
  s.sites = {{"", "hidden_states", {1, tokens, 64}, 1, 0, false},
             {"proj_out", "gather 0", {1, tokens, 64}, 1, 0, true}};
  s.attention = {{"blocks.*.attn", 8, tokens, text, heads, 64, true}};
  return s;
}

const MachineSpeed kFast{1e11, 1e12, "test"};

// The line of the layout --parallel auto chose ("  * cfg ..."; a launched
// run prefixes "[rank 0] "), or "".
std::string chosen_line(const std::string& output) {
  const auto at = output.find("  * cfg ");
  if (at == std::string::npos) return "";
  return output.substr(at, output.find('\n', at) - at);
}

}  // namespace

TEST(AutoLayout, HeadsThatDoNotDivideSteerAwayFromUlysses) {
  // 3 heads on 4 ranks: Ulysses 2 or 4 pads to 4 heads, a third more attention.
  auto c = weigh_layouts(shapes_of(8192, 3), {1024, 1024, 1, 0, 1}, 1000000, 4, false, kFast);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.front().ulysses, 1);
  EXPECT_EQ(c.front().ring, 4);
  EXPECT_LT(c.front().flops, c.back().flops);
  bool noted = false;
  for (const auto& x : c) {
    for (const auto& why : x.costs)
      noted |= why.find("3 heads do not divide by ulysses") != std::string::npos;
  }
  EXPECT_TRUE(noted) << "the padding is said";
}

TEST(AutoLayout, ASlowLinkAndLittleComputeFavourUlyssesFewerBytes) {
  // Short sequence: attention cannot hide Ring's passes, which move more.
  const MachineSpeed slow{1e12, 1e8, "test"};
  auto c = weigh_layouts(shapes_of(256, 8), {256, 256, 1, 0, 1}, 1000, 4, false, slow);
  EXPECT_EQ(c.front().ulysses, 4);
  EXPECT_LT(c.front().prediction.total_bytes(), c.back().prediction.total_bytes());
}

TEST(AutoLayout, GuidanceOnEvenRanksRunsItsBranchesInParallel) {
  auto c = weigh_layouts(shapes_of(4096, 8, 77), {1024, 1024, 1, 77, 1}, 10000000, 4, true, kFast);
  EXPECT_EQ(c.front().cfg, 2);
  auto odd =
      weigh_layouts(shapes_of(4096, 8, 77), {1024, 1024, 1, 77, 1}, 10000000, 3, true, kFast);
  for (const auto& x : odd) EXPECT_EQ(x.cfg, 1) << "cfg 2 needs an even number of ranks";
  auto unguided =
      weigh_layouts(shapes_of(4096, 8), {1024, 1024, 1, 0, 1}, 10000000, 4, false, kFast);
  for (const auto& x : unguided) EXPECT_EQ(x.cfg, 1) << "no guidance, no CFG axis";
}

TEST(AutoLayout, NoPossibleLayoutIsSaid) {
  auto c = weigh_layouts(shapes_of(3, 4), {16, 48, 1, 0, 1}, 1000, 4, false, kFast);
  EXPECT_FALSE(c.front().possible);
  const auto table = describe(c, kFast);
  EXPECT_NE(table.find("impossible: the sequence has 3 tokens, fewer than the 4 ranks"),
            std::string::npos)
      << table;
}

TEST(AutoLayout, RunChoosesRunsAndMatchesOneRank) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  const std::string base =
      std::string(SPDIT_BIN) +
      " run --model wan --preset tiny --height 64 --width 64 --frames 5 --text-len 9 --steps 2";
  auto r = test::run_command(base + " --nproc 4 --cfg-scale 5 --parallel auto --check");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--parallel auto:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layouts weighed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(match)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  auto both = test::run_command(base + " --nproc 2 --parallel auto --ulysses 2");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.output.find("--parallel auto chooses --cfg, --ulysses and --ring itself"),
            std::string::npos)
      << both.output;
  auto ex = test::run_command(std::string(SPDIT_BIN) +
                              " explain --model flux --preset small --parallel auto --ranks 4");
  EXPECT_EQ(ex.code, 0) << ex.output;
  EXPECT_NE(ex.output.find("--parallel auto on 4 ranks"), std::string::npos) << ex.output;
}

namespace {

// A model of 1 GB of weights, 0.9 GB of them in 12 blocks of 75 MB.
MemoryNeed gigabyte_model(int64_t budget) {
  MemoryNeed m;
  m.budget = budget;
  m.source = "test";
  m.weights = 1000000000;
  m.blocks = 900000000;
  m.largest_block = 75000000;
  m.gathered_per_forward = m.blocks / 4 * 3;
  return m;
}

}  // namespace

TEST(AutoLayout, ReplicatedWeightsThatDoNotFitChooseSharding) {
  // 4 ranks, 0.7 GB each: 1 GB replicated cannot fit; sharded a rank holds
  // 0.1 GB + 0.9 GB / 4 + two blocks = 0.475 GB, plus the activations.
  const auto memory = gigabyte_model(700000000);
  auto c =
      weigh_layouts(shapes_of(8192, 4), {1024, 1024, 1, 0, 1}, 250000000, 4, false, kFast, memory);
  ASSERT_TRUE(c.front().possible);
  EXPECT_TRUE(c.front().shard);
  EXPECT_EQ(c.front().weight_bytes, 100000000 + 225000000 + 150000000);
  EXPECT_LE(c.front().weight_bytes + c.front().activation_bytes, memory.budget);
  for (const auto& cand : c) {
    if (cand.shard) continue;
    EXPECT_FALSE(cand.possible) << "replicated weights (1 GB) cannot fit 0.7 GB";
    EXPECT_FALSE(cand.fits);
  }
  const auto table = describe(c, kFast);
  EXPECT_NE(table.find("does not fit: needs"), std::string::npos) << table;
  EXPECT_NE(table.find("chosen: the fastest layout that fits"), std::string::npos) << table;
  EXPECT_NE(table.find("replicated weights (1.0 GB) do not fit"), std::string::npos) << table;
  // The sharded layout moves its gathers: they are in its bytes.
  EXPECT_GE(c.front().prediction.bytes.at("all_gather"), memory.gathered_per_forward);
}

TEST(AutoLayout, WeightsThatFitStayReplicated) {
  const auto memory = gigabyte_model(4000000000);
  auto c =
      weigh_layouts(shapes_of(8192, 4), {1024, 1024, 1, 0, 1}, 250000000, 4, false, kFast, memory);
  ASSERT_TRUE(c.front().possible);
  EXPECT_FALSE(c.front().shard);
  EXPECT_EQ(c.front().weight_bytes, memory.weights);
  const auto table = describe(c, kFast);
  EXPECT_NE(table.find("not chosen: sharding moves weights every forward"), std::string::npos)
      << table;
  // Without a budget nothing is rejected, and replicated weights still win.
  auto free = weigh_layouts(shapes_of(8192, 4), {1024, 1024, 1, 0, 1}, 250000000, 4, false, kFast,
                            gigabyte_model(0));
  EXPECT_FALSE(free.front().shard);
  for (const auto& cand : free) EXPECT_TRUE(cand.possible);
}

TEST(AutoLayout, NothingFitsSaysWhatItNeeds) {
  const auto memory = gigabyte_model(300000000);  // sharded needs 0.475 GB and more
  auto c =
      weigh_layouts(shapes_of(8192, 4), {1024, 1024, 1, 0, 1}, 250000000, 4, false, kFast, memory);
  EXPECT_FALSE(c.front().possible);
  const auto msg = test::error_of([&] { throw_if_nothing_fits(c, memory); });
  EXPECT_NE(msg.find("no layout fits in 300.0 MB per rank (test)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the least any needs is"), std::string::npos) << msg;
  EXPECT_NE(msg.find("sharded weights: weights 475.0 MB"), std::string::npos) << msg;
  EXPECT_NE(msg.find("more ranks"), std::string::npos) << msg;
}

TEST(AutoLayout, MemoryPerRankFlagIsReadOrRefused) {
  EXPECT_EQ(memory_budget("8e9", 2).budget, 8000000000);
  EXPECT_EQ(memory_budget("123456789", 1).budget, 123456789);
  EXPECT_EQ(memory_budget("", 1).budget, 0);
  EXPECT_GT(memory_budget("auto", 1).budget, memory_budget("auto", 4).budget);
  const auto msg = test::error_of([] { memory_budget("lots", 1); });
  EXPECT_NE(msg.find("--memory-per-rank 'lots' is neither a number of bytes"), std::string::npos)
      << msg;
}

// As a user runs it: flux small on 4 ranks holds 37.0 MB of weights whole,
// 29.9 MB sharded (1/4 of the blocks and two blocks whole); with 38 MB per
// rank only sharded layouts fit beside the activations, and the run shards.
TEST(AutoLayout, RunShardsWeightsThatDoNotFitReplicated) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  const std::string base = std::string(SPDIT_BIN) +
                           " run --model flux --preset small --height 256 --width 256 --text-len 16"
                           " --steps 1 --nproc 4 --parallel auto";
  auto r = test::run_command(base + " --memory-per-rank 38e6 --check");
  ASSERT_EQ(r.code, 0) << r.output;
  // Which of the sharded layouts is fastest depends on the link measured.
  EXPECT_NE(chosen_line(r.output).find(", sharded weights"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("replicated weights (37.0 MB) do not fit"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("sharded ("), std::string::npos) << r.output;  // the run's summary
  EXPECT_NE(r.output.find("(match)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  // Fits nowhere: said with the least any layout needs, before any work.
  auto none = test::run_command(base + " --memory-per-rank 20e6");
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.output.find("no layout fits in 20.0 MB per rank (--memory-per-rank 20e6)"),
            std::string::npos)
      << none.output;
  EXPECT_NE(none.output.find("the least any needs is"), std::string::npos) << none.output;
  // explain says the same, and the budget without --parallel auto is refused.
  const std::string ex = std::string(SPDIT_BIN) +
                         " explain --model flux --preset small --height 256 --width 256"
                         " --text-len 16 --memory-per-rank 38e6";
  auto e = test::run_command(ex + " --parallel auto --ranks 4");
  EXPECT_EQ(e.code, 0) << e.output;
  EXPECT_NE(chosen_line(e.output).find(", sharded weights"), std::string::npos) << e.output;
  EXPECT_NE(e.output.find("weights per rank: held"), std::string::npos) << e.output;
  auto manual = test::run_command(ex + " --ring 4");
  EXPECT_NE(manual.code, 0);
  EXPECT_NE(manual.output.find("--memory-per-rank is the budget --parallel auto weighs"),
            std::string::npos)
      << manual.output;
}
