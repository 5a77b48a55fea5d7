#pragma once
// Building blocks the reference DiTs share, named as diffusers names them so
// that state-dict keys match the public checkpoints.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "spdit/hooks/value.h"

namespace spdit::models {

/// Linear's parameters (weight (out, in), bias (out)), init and
/// forward; under a SkeletonScope its parameters are left on lazy pages,
/// uninitialised, for a checkpoint to replace.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool with_bias = true);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;
};
TORCH_MODULE(Linear);

/// RMSNorm over the last dim with a learned `weight`.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

/// LayerNorm over the last dim, optionally with weight and bias, computed in fp32.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, bool affine, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight, bias;

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

/// LayerNorm over the last dim without weights (eps 1e-6), statistics in
/// fp32, the result in x's dtype.
at::Tensor plain_layer_norm(const at::Tensor& x);

/// diffusers' FeedForward: net.0.proj (Linear + tanh-GELU), net.2 (Linear).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden, int64_t out = -1);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::ModuleList net_;
  Linear proj_{nullptr}, out_{nullptr};
};
TORCH_MODULE(FeedForward);

/// diffusers' TimestepEmbedding: linear_1, SiLU, linear_2.
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in, int64_t dim, bool gelu = false);
  at::Tensor forward(const at::Tensor& x);

 private:
  Linear linear_1_{nullptr}, linear_2_{nullptr};
  bool gelu_;
};
TORCH_MODULE(TimestepEmbedding);

/// Sinusoidal features of (possibly fractional) timesteps: (...) -> (..., dim),
/// cos first (flip_sin_to_cos), no frequency shift; float32 out. Computed in
/// `compute`: float32 as Flux's own code and diffusers do, float64 as Wan's
/// own model does (sinusoidal_embedding_1d; at t = 700 the two differ by
/// 4e-5, which reaches the output).
at::Tensor timestep_features(const at::Tensor& t, int64_t dim, at::ScalarType compute = at::kFloat);

/// Rotary embedding on interleaved pairs: x (B, S, H, D), cos/sin (S, D/2).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

/// Rotary angles for integer position ids (S, axes) with per-axis dims
/// (summing to the head dim): returns cos, sin of shape (S, D/2).
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& ids,
                                              const std::vector<int64_t>& axes_dims, double theta);

/// x * (1 + scale) + shift, with scale/shift broadcast over the sequence.
/// The models take floating-point inputs; an integer or bool tensor would be
/// converted silently by some ops and refused obscurely by others. Throws
/// naming the model, the argument and its dtype.
void check_floating_inputs(const char* model, const BoundArgs& args,
                           std::initializer_list<const char*> names);

at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale);

/// Seeds every parameter from a generator of its own seed (weights
/// N(0, scale^2/fan_in), small biases, norm weights near 1): ranks build
/// identical models without sharing the global generator. Drawn in fp32 and
/// converted one parameter at a time to `dtype` (fp32 for `keep_fp32`
/// modules, precision.h): every dtype gets the same weights, and the model
/// never exists whole in fp32.
void seeded_init(torch::nn::Module& model, uint64_t seed, double scale = 1.0,
                 at::ScalarType dtype = at::kFloat, const std::vector<std::string>& keep_fp32 = {});

}  // namespace spdit::models
