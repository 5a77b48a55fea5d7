#pragma once
// The dtype a model computes in. A model runs in its weights' dtype: every
// Linear casts its input to its weight's dtype, so activations follow the
// weights. Where precision needs it, fp32 stays: norm statistics, softmax
// statistics and accumulation (the attention kernels), timestep sinusoids,
// RoPE tables, and the parameters a model lists as kept in fp32 (as
// diffusers' `_keep_in_fp32_modules`: Wan's time embedder, norms and
// modulation tables).
//
//   auto dtype = parse_dtype("bf16");                  // or throws naming the choices
//   check_dtype_runs(dtype);                            // fp16 on a CPU build: refused
//   convert_parameters(*model, dtype, WanTransformerImpl::keep_in_fp32_modules());
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace spdit::models {

/// "bf16", "fp16" or "fp32" (also "bfloat16", "float16", "float32").
at::ScalarType parse_dtype(const std::string& name);
/// "bf16", "fp16", "fp32", or LibTorch's name for others.
std::string dtype_name(at::ScalarType dtype);

/// Throws when this LibTorch cannot run a model in `dtype` on `device` (a CPU
/// build of LibTorch 1.13 has no fp16 matrix product), naming what would.
void check_dtype_runs(at::ScalarType dtype, const at::Device& device = at::kCPU);

/// The dtype parameter `name` takes in a model running in `dtype`: fp32 when
/// a dot-separated component of the name is one of `keep_fp32`.
at::ScalarType parameter_dtype(const std::string& name, at::ScalarType dtype,
                               const std::vector<std::string>& keep_fp32);

/// Converts the floating parameters and buffers of `model` to their
/// parameter_dtype, in place of the old ones.
void convert_parameters(torch::nn::Module& model, at::ScalarType dtype,
                        const std::vector<std::string>& keep_fp32);

/// The largest relative error (max |a - b| / max |b|) we state and test for
/// a model's output in `dtype` against the same model and inputs in fp32.
double tolerance_against_fp32(at::ScalarType dtype);
/// The same for a sequence-parallel run against one rank, both in `dtype`
/// (`spdit run --check`).
double tolerance_against_one_rank(at::ScalarType dtype);

}  // namespace spdit::models
