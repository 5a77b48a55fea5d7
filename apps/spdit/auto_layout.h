#pragma once
// `--parallel auto`: the layout (cfg x ulysses x ring, weights replicated or
// sharded) a run should use, chosen by predicting each candidate's step time
// from the model's shapes, the machine's measured speeds and the exact bytes
// predict_step counts, among the candidates whose weights and activations
// fit the memory per rank. `spdit explain --parallel auto` prints every
// candidate weighed and why the chosen one wins.
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "predict.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

/// What the time model needs of the machine.
struct MachineSpeed {
  double flops_per_s = 0;       // one rank's matrix-product speed
  double link_bytes_per_s = 0;  // one rank's all-to-all bandwidth
  std::string source;           // how they were obtained, for the report
};

/// What a rank holds, to weigh layouts against the memory it may use.
struct MemoryNeed {
  int64_t budget = 0;   // bytes per rank; 0: not limited (nothing rejected)
  std::string source;   // where the budget comes from, for the report
  int64_t weights = 0;  // every parameter, in the dtypes the run holds them
  int64_t blocks = 0;   // of them, the blocks' (what --shard-weights splits)
  int64_t largest_block = 0;
  int64_t gathered_per_forward = 0;  // --shard-weights' all-gathers per rank (ShardedWeights)
  /// Weights per rank: whole, or sharded (1/P of the blocks, the rest whole,
  /// and two blocks whole while they run).
  int64_t weights_per_rank(int ranks, bool shard) const;
};

/// A forward's activations per rank, estimated from the tokens it holds
/// (its share of the sequence and the replicated text) and the model's width:
/// the residual streams, the attention's queries, keys, values and output,
/// Ring's key/value buffers in flight, and the MLP's 4x wider hidden layer.
int64_t estimate_activation_bytes(const models::ForwardShapes& shapes, const models::RunSize& size,
                                  const StepPrediction& prediction, int64_t ring);

/// --memory-per-rank: BYTES (a whole number, "8e9" too), or "auto": the
/// memory available now shared by `local_ranks`. Throws naming the flag.
MemoryNeed memory_budget(const std::string& flag_value, int local_ranks);

/// The weights of `model` (a skeleton does) in the dtypes `dtype_of(name)`
/// gives, and the sharded gathers over `ranks`, added to `need`.
void add_model_weights(MemoryNeed& need, torch::nn::Module& model, int ranks,
                       const std::function<at::ScalarType(const std::string&)>& dtype_of);

struct LayoutCandidate {
  int cfg = 1, ulysses = 1, ring = 1;
  bool shard = false;            // --shard-weights
  int64_t weight_bytes = 0;      // per rank
  int64_t activation_bytes = 0;  // per rank, estimated
  bool fits = true;              // weights + activations within the budget
  StepPrediction prediction;
  double flops = 0;                // per rank and step
  double compute_seconds = 0;      // flops / speed
  double comm_seconds = 0;         // bytes not hidden behind compute / bandwidth
  double step_seconds = 0;         // the prediction compared
  std::vector<std::string> costs;  // what makes it slower than it could be
  bool possible = true;
};

/// Every layout of `ranks` (cfg 2 only when guided; with several ranks each
/// with replicated and with sharded weights), predicted; the best possible
/// one that fits `memory` first (ties: replicated weights, which move
/// nothing). Candidates that do not fit are impossible, and say what they need.
std::vector<LayoutCandidate> weigh_layouts(const models::ForwardShapes& shapes,
                                           const models::RunSize& size, int64_t parameters,
                                           int ranks, bool guided, const MachineSpeed& speed,
                                           const MemoryNeed& memory = {});

/// Throws when no candidate is possible: for memory, naming the least any
/// layout needs per rank against the budget, and what would make it fit.
void throw_if_nothing_fits(const std::vector<LayoutCandidate>& candidates,
                           const MemoryNeed& memory);

/// This rank's matrix-product speed (a short GEMM of the model's width in
/// its dtype), and, over `world` when it has several ranks, the all-to-all
/// bandwidth (a few MB exchanged, the slowest rank's figure).
MachineSpeed measure_speed(World* world, int64_t width, at::ScalarType dtype = at::kFloat);

/// The table explain prints.
std::string describe(const std::vector<LayoutCandidate>& candidates, const MachineSpeed& speed);

/// What `--parallel auto` decided, and the table saying why.
struct LayoutChoice {
  std::vector<LayoutCandidate> candidates;  // best first
  MachineSpeed speed;
  MemoryNeed memory;
  const LayoutCandidate& best() const { return candidates.front(); }
  std::string table() const;
};

/// Measures (over `world` when given; `assumed_link_gbps` > 0 replaces the
/// link measure, for explain) and weighs every layout of `ranks` for `pipe`'s
/// model at `shapes`.
/// `memory`: the budget (memory_budget); the model's weights are added here
/// from `pipe` (a skeleton does), in the dtypes `dtype_of` gives.
LayoutChoice choose_layout(models::Pipeline& pipe, const models::ForwardShapes& shapes,
                           const models::RunSize& size, int ranks, bool guided, World* world,
                           double assumed_link_gbps = 0, MemoryNeed memory = {},
                           const std::function<at::ScalarType(const std::string&)>& dtype_of = {});

}  // namespace spdit::cli
