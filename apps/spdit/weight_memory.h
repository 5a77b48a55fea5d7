#pragma once
// What a model's weights cost one rank, held and while loading, replicated
// or sharded (--shard-weights): for `spdit explain`.
#include <torch/nn/module.h>

#include <functional>
#include <string>

#include "spdit/checkpoints/model_checkpoint.h"

namespace spdit::cli {

/// Bytes one rank allocates for the weights.
struct WeightMemory {
  int64_t held = 0;     // after loading (sharded: the rest whole, 1/P of the blocks)
  int64_t loading = 0;  // the peak while loading: converted tensors; in-place
                        // ones are file pages the local ranks share
};

/// `model` (a skeleton does) holding its parameters in the dtypes `dtype_of`
/// gives, over `ranks`; from `ckpt` when given, else seeded (made whole on
/// every rank, then sharded).
WeightMemory weight_memory(torch::nn::Module& model, int ranks, bool shard,
                           const std::function<at::ScalarType(const std::string&)>& dtype_of,
                           const checkpoints::Checkpoint* ckpt,
                           const checkpoints::Identified* found);

/// One line: "held X, loading peak Y (...)".
std::string describe_weight_memory(
    torch::nn::Module& model, int ranks, bool shard,
    const std::function<at::ScalarType(const std::string&)>& dtype_of,
    const checkpoints::Checkpoint* ckpt, const checkpoints::Identified* found);

}  // namespace spdit::cli
