#pragma once
// `--parallel auto`: the layout (cfg x ulysses x ring) a run should use,
// chosen by predicting each candidate's step time from the model's shapes,
// the machine's measured speeds and the exact bytes predict_step counts.
// `spdit explain --parallel auto` prints every candidate weighed and why the
// chosen one wins.
#include <ATen/ATen.h>

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

struct LayoutCandidate {
  int cfg = 1, ulysses = 1, ring = 1;
  StepPrediction prediction;
  double flops = 0;                // per rank and step
  double compute_seconds = 0;      // flops / speed
  double comm_seconds = 0;         // bytes not hidden behind compute / bandwidth
  double step_seconds = 0;         // the prediction compared
  std::vector<std::string> costs;  // what makes it slower than it could be
  bool possible = true;
};

/// Every layout of `ranks` (cfg 2 only when guided), predicted; the best
/// possible one first.
std::vector<LayoutCandidate> weigh_layouts(const models::ForwardShapes& shapes,
                                           const models::RunSize& size, int64_t parameters,
                                           int ranks, bool guided, const MachineSpeed& speed);

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
  const LayoutCandidate& best() const { return candidates.front(); }
  std::string table() const { return describe(candidates, speed); }
};

/// Measures (over `world` when given; `assumed_link_gbps` > 0 replaces the
/// link measure, for explain) and weighs every layout of `ranks` for `pipe`'s
/// model at `shapes`.
LayoutChoice choose_layout(models::Pipeline& pipe, const models::ForwardShapes& shapes,
                           const models::RunSize& size, int ranks, bool guided, World* world,
                           double assumed_link_gbps = 0);

}  // namespace spdit::cli
