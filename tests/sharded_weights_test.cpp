// Sharded weights (sharding/sharded_weights.h): with each rank keeping 1/P of
// every block, the forward under SP is bit-identical to the same forward with
// replicated weights, for every model and layout of 2 and 4 ranks; each rank
// keeps 1/P of the block bytes; the gathers move exactly the bytes predicted;
// and mistakes end in errors, not wrong numbers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/precision.h"
#include "spdit/sharding/sharded_weights.h"
#include "support/ranks.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using namespace spdit::models;

namespace {

// The velocity of `name` (tiny, seed 3) on P ranks under (u, r), with the
// blocks' weights sharded or replicated; rank 0's result.
at::Tensor velocity_on_ranks(const std::string& name, const RunSize& size, int u, int r, bool shard,
                             int64_t* kept = nullptr, int64_t* block_bytes = nullptr,
                             int64_t* gathered = nullptr, int64_t* predicted = nullptr) {
  at::Tensor out;
  std::mutex m;
  test::run_ranks(u * r, [&](World& w) {
    auto pipe = make_pipeline(name, "tiny", 3);
    auto x = pipe->prepare(size, 4);
    SequenceParallelConfig cfg{u, r};
    cfg.setup(w);
    apply_sequence_parallel(pipe->model(), cfg);
    std::unique_ptr<ShardedWeights> shards;
    if (shard) shards = std::make_unique<ShardedWeights>(pipe->model(), new_shard_group(w));
    pipe->velocity(x, 0.7);  // warm
    w.barrier();
    const int64_t before = w.counters().get("all_gather").received;
    auto v = pipe->velocity(x, 0.3);
    const int64_t moved = w.counters().get("all_gather").received - before;
    if (w.rank() != 0) return;
    std::lock_guard<std::mutex> lock(m);
    out = v;
    if (gathered) *gathered = moved;
    if (shards) {
      if (kept) *kept = shards->kept_bytes();
      if (block_bytes) *block_bytes = shards->block_bytes();
      if (predicted) *predicted = shards->received_bytes_per_forward();
    }
  });
  return out;
}

// A checkpoint folder of `model` (tiny, seed 5) stored in `stored`, opened
// and identified.
struct TinyCheckpoint {
  test::TempDir dir;
  std::optional<checkpoints::Checkpoint> ckpt;
  checkpoints::Identified found;
  TinyCheckpoint(const std::string& model, at::ScalarType stored) {
    const auto config = preset_config(model, "tiny");
    auto seeded = make_pipeline(config, 5);
    checkpoints::write_transformer_folder(dir.path, config, seeded->model(), stored);
    ckpt = checkpoints::Checkpoint::open(dir.path);
    found = checkpoints::identify(*ckpt);
  }
};

// Rank 0's velocity on 2 ranks (ring 2) from a checkpoint loaded in `dtype`:
// whole and then sharded, or sharded as it loads (each rank reads and
// converts only its slice of the blocks).
at::Tensor velocity_from_checkpoint(const TinyCheckpoint& c, at::ScalarType dtype,
                                    bool shard_while_loading, const RunSize& size) {
  at::Tensor out;
  std::mutex m;
  test::run_ranks(2, [&](World& w) {
    std::unique_ptr<Pipeline> pipe;
    std::map<std::string, at::Tensor> stored;
    if (shard_while_loading) {
      pipe = make_pipeline(c.found.config, 3, Weights::kNone, dtype);
      stored = checkpoints::load_checkpoint_leaving(
          pipe->model(), *c.ckpt, c.found, dtype,
          ShardedWeights::block_parameter_names(pipe->model()));
      EXPECT_EQ(stored.size(), ShardedWeights::block_parameter_names(pipe->model()).size());
    } else {
      pipe = checkpoints::make_pipeline(*c.ckpt, c.found, 3, dtype);
    }
    auto x = pipe->prepare(size, 4);
    SequenceParallelConfig cfg{1, 2};
    cfg.setup(w);
    apply_sequence_parallel(pipe->model(), cfg);
    ShardedWeights shards(pipe->model(), new_shard_group(w), stored);
    auto v = pipe->velocity(x, 0.4);
    if (w.rank() != 0) return;
    std::lock_guard<std::mutex> lock(m);
    out = v;
  });
  return out;
}

}  // namespace

TEST(ShardedWeights, LoadingShardedIsBitIdenticalToLoadingWhole) {
  // bf16 file into an fp32 run and fp32 file into a bf16 run (Flux keeps some
  // modules in fp32): the slices are converted as the whole tensors would be.
  for (const std::string model : {"flux", "wan"}) {
    const RunSize size{64, 80, model == "wan" ? 5 : 1, 7, 1};
    for (auto [stored, run] : {std::pair{at::kBFloat16, at::kFloat},
                               {at::kFloat, at::kBFloat16},
                               {at::kFloat, at::kFloat}}) {
      TinyCheckpoint c(model, stored);
      const auto whole = velocity_from_checkpoint(c, run, false, size);
      const auto sliced = velocity_from_checkpoint(c, run, true, size);
      EXPECT_TRUE(at::equal(whole, sliced))
          << model << " stored " << dtype_name(stored) << ", run in " << dtype_name(run);
    }
  }
}

TEST(ShardedWeights, StoredTensorOfAnotherShapeIsRefused) {
  test::run_ranks(2, [&](World& w) {
    auto pipe = make_pipeline("flux", "tiny", 3);
    const auto names = ShardedWeights::block_parameter_names(pipe->model());
    ASSERT_FALSE(names.empty());
    EXPECT_EQ(names.front().rfind("transformer_blocks.0.", 0), 0u) << names.front();
    const std::map<std::string, at::Tensor> stored{{names.front(), at::zeros({3})}};
    const auto msg = test::error_of([&] { ShardedWeights(pipe->model(), w.group(), stored); });
    EXPECT_NE(msg.find(names.front()), std::string::npos) << msg;
    EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  });
}

TEST(ShardedWeights, ForwardIsBitIdenticalToReplicatedWeights) {
  for (const std::string name : {"flux", "wan", "qwen-image"}) {
    // Tokens that do not divide by 4 (flux: 7 x 9 patches).
    RunSize size{112, 144, name == "wan" ? 5 : 1, 9, 1};
    for (int p : {2, 4}) {
      for (auto [u, r] : test::factorizations(p)) {
        int64_t kept = 0, total = 0, gathered = 0, predicted = 0, sp_gathers = 0;
        const auto replicated =
            velocity_on_ranks(name, size, u, r, false, nullptr, nullptr, &sp_gathers);
        const auto sharded =
            velocity_on_ranks(name, size, u, r, true, &kept, &total, &gathered, &predicted);
        EXPECT_TRUE(at::equal(sharded, replicated)) << name << " ulysses " << u << " x ring " << r;
        EXPECT_LE(kept * p, total + 64 * p * 16)
            << name << ": a rank keeps 1/P of the blocks (plus padding)";
        EXPECT_GE(kept * p, total);
        // The plan's own gathers are all_gather bytes too: the difference is the weights'.
        EXPECT_EQ(gathered - sp_gathers, predicted) << name << " ulysses " << u << " x ring " << r
                                                    << ": the gathers move what was predicted";
        EXPECT_EQ(predicted, kept * (p - 1));
      }
    }
  }
}

TEST(ShardedWeights, UnshardGivesTheWholeWeightsBack) {
  RunSize size{64, 64, 1, 5, 1};
  auto single = make_pipeline("flux", "tiny", 3);
  auto x = single->prepare(size, 4);
  const auto expected = single->velocity(x, 0.5);
  test::run_ranks(2, [&](World& w) {
    auto pipe = make_pipeline("flux", "tiny", 3);
    pipe->prepare(size, 4);
    ShardedWeights shards(pipe->model(), w.group());
    EXPECT_EQ(shards.blocks(), 4u);  // tiny flux: 2 dual + 2 single blocks
    shards.unshard();                // collective
    // Whole again: this rank alone (no plan, no peers) computes the one-rank result.
    EXPECT_TRUE(at::equal(pipe->velocity(x, 0.5), expected));
  });
}

TEST(ShardedWeights, MistakesFailLoudly) {
  // A model without blocks cannot be sharded.
  torch::nn::Module plain;
  test::run_ranks(
      2, [&](World& w) { EXPECT_THROW(ShardedWeights(plain, w.group()), std::invalid_argument); });
  // Shards dropped without unshard(): the blocks have no weights, and the
  // next forward fails instead of computing with half of them.
  RunSize size{64, 64, 1, 5, 1};
  test::run_ranks(2, [&](World& w) {
    auto pipe = make_pipeline("flux", "tiny", 3);
    auto x = pipe->prepare(size, 4);
    { ShardedWeights shards(pipe->model(), w.group()); }
    EXPECT_ANY_THROW(pipe->velocity(x, 0.5));
  });
}

// As a user runs it: separate processes, parity with one rank, the bytes
// predicted equal to the counters, and the same for a model folder's pipeline.
TEST(ShardedWeights, RunAsSeparateProcesses) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  auto r = test::run_command(
      std::string(SPDIT_BIN) +
      " run --model wan --preset tiny --height 64 --width 80 --frames 5 --text-len 7 --steps 2"
      " --nproc 3 --ring 3 --shard-weights --check");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(match)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sharded ("), std::string::npos) << r.output;
  // explain predicts what the run counted.
  auto e = test::run_command(
      std::string(SPDIT_BIN) +
      " explain --model wan --preset tiny --height 64 --width 80 --frames 5 --text-len 7"
      " --ring 3 --shard-weights");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_NE(e.output.find("all-gathered as it runs"), std::string::npos) << e.output;
}

// Loading sharded lowers each process's resident peak: a bf16 checkpoint run
// in fp32 is converted whole on every rank when replicated, and only a rank's
// slice of the blocks when sharded. Peaks (VmHWM) of separate processes,
// compared with half the expected saving as margin; the runs agree.
TEST(ShardedWeights, LoadingShardedLowersEachRanksPeakAsProcesses) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  test::TempDir dir;
  // Large enough that the weights, not the process, make the peak: ~70 M
  // parameters, 140 MB in bf16, 280 MB in fp32.
  FluxConfig config = FluxConfig::preset("small");
  config.hidden = 512, config.heads = 8, config.head_dim = 64, config.dual_blocks = 4;
  config.single_blocks = 8, config.text_dim = 64;
  int64_t block_bytes_fp32 = 0;
  {
    auto seeded = make_pipeline(config, 5);
    for (const auto& name : ShardedWeights::block_parameter_names(seeded->model())) {
      block_bytes_fp32 += seeded->model().named_parameters()[name].numel() * 4;
    }
    checkpoints::write_transformer_folder(dir.path, config, seeded->model(), at::kBFloat16);
  }
  auto run = [&](bool shard) {
    const std::string json = dir.path + (shard ? "/sharded.json" : "/replicated.json");
    auto r = test::run_command(std::string(SPDIT_BIN) + " run --weights " + dir.path +
                               " --dtype fp32 --height 64 --width 64 --text-len 5 --steps 1"
                               " --nproc 2 --ring 2 --json " +
                               json + (shard ? " --shard-weights" : ""));
    EXPECT_EQ(r.code, 0) << r.output;
    std::ifstream f(json);
    return nlohmann::json::parse(f);
  };
  const auto replicated = run(false), sharded = run(true);
  EXPECT_TRUE(sharded["shard_weights"].get<bool>());
  for (int rank = 0; rank < 2; ++rank) {
    const auto whole = replicated["load_peak_rss_bytes_per_rank"][rank].get<int64_t>();
    const auto sliced = sharded["load_peak_rss_bytes_per_rank"][rank].get<int64_t>();
    // Expected saving: half the blocks' fp32 bytes (140 MB); half of that as margin.
    EXPECT_LT(sliced + block_bytes_fp32 / 4, whole)
        << "rank " << rank << ": loading sharded peaked at " << sliced << " bytes, replicated at "
        << whole << "; block weights " << block_bytes_fp32;
  }
  EXPECT_EQ(sharded["comm_bytes_sent"], sharded["comm_bytes_predicted"]);
  // explain predicts what loading allocates; the peaks differ by about the
  // difference (the rest of a peak is the process itself).
  auto predicted = [&](bool shard) {
    auto e = test::run_command(std::string(SPDIT_BIN) + " explain --weights " + dir.path +
                               " --dtype fp32 --height 64 --width 64 --text-len 5 --ring 2" +
                               (shard ? " --shard-weights" : ""));
    EXPECT_EQ(e.code, 0) << e.output;
    const auto at = e.output.find("loading allocates ");
    EXPECT_NE(at, std::string::npos) << e.output;
    return at == std::string::npos ? 0.0 : std::stod(e.output.substr(at + 18)) * 1e6;  // "N MB"
  };
  const double saving = predicted(false) - predicted(true);
  const double measured = replicated["load_peak_rss_bytes"].get<double>() -
                          sharded["load_peak_rss_bytes"].get<double>();
  std::cout << "loading peak (max over 2 ranks): replicated "
            << replicated["load_peak_rss_bytes"].get<double>() / 1e6 << " MB, sharded "
            << sharded["load_peak_rss_bytes"].get<double>() / 1e6 << " MB; saving "
            << measured / 1e6 << " MB, explain predicts " << saving / 1e6 << " MB" << std::endl;
  EXPECT_GT(saving, 0.4 * static_cast<double>(block_bytes_fp32));
  EXPECT_NEAR(measured, saving, 0.25 * saving) << "predicted saving " << saving;
}
