#pragma once
// What the pipeline commands (run --model-dir for FLUX.1 and Wan, encode,
// decode) share: phase timing and reading one named tensor from a
// .safetensors file a user passes (--prompt-embeds, --noise, --latents).
#include <ATen/ATen.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "spdit/checkpoints/checkpoint.h"

namespace spdit::cli {

using Clock = std::chrono::steady_clock;

inline double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// The tensor `name` of `file`, copied out of the mapped file; an error
/// naming what the file holds when it lacks it.
inline at::Tensor tensor_from(const std::string& file, const std::string& name) {
  auto ckpt = checkpoints::Checkpoint::open(file);
  if (!ckpt.has(name)) {
    std::string held;
    for (const auto& [n, t] : ckpt.tensors()) held += (held.empty() ? "" : ", ") + n;
    throw std::invalid_argument("'" + file + "' holds no tensor '" + name + "' (it holds: " + held +
                                ")");
  }
  return ckpt.tensor(name).clone();
}

}  // namespace spdit::cli
