#pragma once
// Applies an SP plan to a model by registering split and gather hooks on the
// modules it names; the model's forward() stays the single-device code.
//
//   spdit::SequenceParallelConfig cfg{2, 2};
//   spdit::apply_sequence_parallel(*model, cfg);     // plan from the model
//   auto y = model->call({x}, {{"encoder_hidden_states", ctx}});
//   spdit::remove_sequence_parallel(*model);         // exactly as before
#include <optional>
#include <string>
#include <vector>

#include "spdit/plan/sp_config.h"
#include "spdit/plan/sp_plan.h"

namespace torch::nn {
class Module;
}

namespace spdit {

/// Validates `plan` (the model's own when omitted) against the model (module
/// paths, `*` expansion, parameter names, dims) and registers its hooks. Sets
/// up `config` on the current World if it is not yet. Nothing is registered
/// when any check fails; applying to a model that already has a plan is an
/// error.
void apply_sequence_parallel(torch::nn::Module& model, const SequenceParallelConfig& config,
                             std::optional<SequenceParallelModelPlan> plan = std::nullopt);

/// Removes every hook apply_sequence_parallel registered; a model without a
/// plan is left alone.
void remove_sequence_parallel(torch::nn::Module& model);

bool is_sequence_parallel_applied(const torch::nn::Module& model);

/// Copies every parameter and buffer of `from` into `to` (the same
/// architecture: names and shapes must match, else an error names the first
/// that does not).
void copy_weights(const torch::nn::Module& from, torch::nn::Module& to);

/// Ranks that run as threads of one process (spdit::run_in_process) need one
/// model object each: hooks belong to module objects, so a second rank's
/// apply_sequence_parallel on a shared model is refused. Builds `n` models
/// with `build` and gives all of them the first one's weights.
///
///   auto models = spdit::make_rank_models(4, [] { return MyTransformer(cfg); });
///   spdit::run_in_process(4, [&](spdit::World& w) {
///     auto& m = models[w.rank()];
///     spdit::apply_sequence_parallel(*m, spdit::SequenceParallelConfig(2, 2));
///     auto y = m->call({x});
///   });
template <typename Build>
auto make_rank_models(int n, Build build) -> std::vector<decltype(build())> {
  std::vector<decltype(build())> models;
  for (int i = 0; i < n; ++i) {
    models.push_back(build());
    if (i > 0) copy_weights(*models.front(), *models.back());
  }
  return models;
}

/// The concrete module paths a plan key names in `model` (expanding `*`);
/// throws naming the key when a path does not exist.
std::vector<std::string> resolve_plan_path(torch::nn::Module& model, const std::string& key);

}  // namespace spdit
