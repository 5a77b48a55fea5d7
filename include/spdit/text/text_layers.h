#pragma once
/// The small layers the text encoders share, named as transformers names
/// their parameters. Each runs in its weights' dtype and keeps the
/// statistics of a norm in fp32, as the reference does.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace spdit::text {

/// nn.Embedding's `weight` (vocab, dim); a lookup of int64 ids. Under a
/// models::SkeletonScope the table is left on lazy pages for a checkpoint.
class EmbeddingTableImpl : public torch::nn::Module {
 public:
  EmbeddingTableImpl(int64_t count, int64_t dim);
  /// Rows of `ids` (any shape) -> ids.shape + (dim); throws naming `what`
  /// when an id is outside the table.
  at::Tensor forward(const at::Tensor& ids, const char* what = "token") const;
  at::Tensor weight;
};
TORCH_MODULE(EmbeddingTable);

/// nn.LayerNorm (weight, bias) over the last dim, statistics in fp32,
/// returned in the input's dtype.
class TextLayerNormImpl : public torch::nn::Module {
 public:
  TextLayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(TextLayerNorm);

/// T5LayerNorm: x / rms(x) with the mean of squares in fp32, no mean
/// subtraction, no bias; the result is cast to the weight's dtype when that
/// is 16-bit before the scale (as transformers does).
class T5LayerNormImpl : public torch::nn::Module {
 public:
  T5LayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(T5LayerNorm);

/// softmax over the last dim in fp32, returned in `x`'s dtype.
at::Tensor softmax_fp32(const at::Tensor& x);

/// The dtype the encoders compute in for weights stored as `stored`: bf16 and
/// fp32 as stored; fp16 as fp32 (LibTorch 1.13 has no fp16 matmul on CPU, and
/// T5 overflows in fp16). Throws for other dtypes naming `what`.
at::ScalarType compute_dtype_for(at::ScalarType stored, const std::string& what);

}  // namespace spdit::text
