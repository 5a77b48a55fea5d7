#include "weight_memory.h"

#include <set>

#include "auto_layout.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::cli {

WeightMemory weight_memory(torch::nn::Module& model, int ranks, bool shard,
                           const std::function<at::ScalarType(const std::string&)>& dtype_of,
                           const checkpoints::Checkpoint* ckpt,
                           const checkpoints::Identified* found) {
  const auto names = ShardedWeights::block_parameter_names(model);
  const std::set<std::string> blocks(names.begin(), names.end());
  shard = shard && ranks > 1;
  const int64_t kept = shard ? ShardedWeights::predict_kept_bytes(model, ranks, dtype_of) : 0;
  WeightMemory m;
  int64_t whole = 0, rest = 0;
  for (const auto& p : model.named_parameters(true)) {
    const auto dtype =
        at::isFloatingType(p.value().scalar_type()) ? dtype_of(p.key()) : p.value().scalar_type();
    const int64_t b = p.value().numel() * static_cast<int64_t>(c10::elementSize(dtype));
    whole += b;
    if (!blocks.count(p.key())) rest += b;
  }
  m.held = shard ? rest + kept : whole;
  if (!ckpt) {
    m.loading = whole;  // seeded weights are drawn whole on every rank
    return m;
  }
  // From a checkpoint: a tensor stored in the dtype the run holds it in is
  // used in place (file pages); the others are converted. Sharded, the
  // blocks' slices are converted straight into the shard: a rank allocates
  // only its shard for them.
  int64_t converted_rest = 0, converted_blocks = 0;
  for (const auto& [name, t] : checkpoints::tensors_in_model_names(*ckpt, *found)) {
    if (!at::isFloatingType(t.scalar_type())) continue;
    const auto want = dtype_of(name);
    if (want == t.scalar_type()) continue;
    (blocks.count(name) ? converted_blocks : converted_rest) +=
        t.numel() * static_cast<int64_t>(c10::elementSize(want));
  }
  m.loading = converted_rest + (shard ? kept : converted_blocks);
  return m;
}

std::string describe_weight_memory(
    torch::nn::Module& model, int ranks, bool shard,
    const std::function<at::ScalarType(const std::string&)>& dtype_of,
    const checkpoints::Checkpoint* ckpt, const checkpoints::Identified* found) {
  const auto m = weight_memory(model, ranks, shard, dtype_of, ckpt, found);
  MemoryNeed need;
  add_model_weights(need, model, ranks, dtype_of);
  std::string s =
      "held " + format_bytes(m.held) +
      (shard && ranks > 1
           ? " (sharded over " + std::to_string(ranks) + " ranks), up to " +
                 format_bytes(need.weights_per_rank(ranks, true)) + " while two blocks are whole"
           : " (replicated)") +
      "; loading allocates " + format_bytes(m.loading);
  if (!ckpt) return s + " (seeded weights are drawn whole on every rank)";
  return s +
         (shard && ranks > 1 ? " (each rank converts only its slice of the blocks"
                             : " (every tensor not stored in the run's dtype is converted") +
         "; tensors stored in it are file pages the ranks of a machine share)";
}

}  // namespace spdit::cli
