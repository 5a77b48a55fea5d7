#pragma once
// What a plan does to any model, for example inputs: the library side of
// `spdit explain`. Runs one forward on in-process ranks (threads, one model
// object each) and reports rank 0's view: every split and gather with its full
// and per-rank shape, the padding, the skips, and the bytes one forward moved
// per rank, by kind; or the error the plan would meet, with its diagnosis.
//
//   auto report = spdit::explain([] { return MyTransformer(cfg).ptr(); },
//                                spdit::SequenceParallelConfig(2, 2), {x, ctx, pos});
//   std::cout << report.describe();
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "spdit/hooks/forward_context.h"
#include "spdit/hooks/hookable.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/comm_counters.h"

namespace spdit {

struct PlanReport {
  int ulysses = 1, ring = 1;
  std::vector<ForwardContext::Split> splits;
  std::vector<ForwardContext::Gather> gathers;
  std::vector<std::string> skipped;
  /// Bytes one forward sent and received on rank 0, by kind.
  std::map<std::string, CommBytes> bytes;
  /// Empty when the forward ran; else the error every rank met.
  std::string error;
  std::string describe() const;
};

/// `build` makes one model (its plan declared, or `plan` given); the first
/// model's weights are copied into the others. Inputs as for call(). Keep
/// the inputs small: the forward really runs, on U x R threads of this process.
PlanReport explain(const std::function<std::shared_ptr<HookableModule>()>& build,
                   const SequenceParallelConfig& config, std::vector<Value> positional,
                   std::vector<Kwarg> named = {});

}  // namespace spdit
