#include "spdit/text/text_layers.h"

#include <stdexcept>
#include <string>

#include "spdit/models/skeleton.h"

namespace spdit::text {

EmbeddingTableImpl::EmbeddingTableImpl(int64_t count, int64_t dim) {
  // A real T5 table is 32128 x 4096: never allocate it only to replace it.
  weight = register_parameter("weight", models::SkeletonScope::active()
                                            ? models::lazy_empty({count, dim}, at::kFloat)
                                            : at::randn({count, dim}) * 0.02);
}

at::Tensor EmbeddingTableImpl::forward(const at::Tensor& ids, const char* what) const {
  if (ids.scalar_type() != at::kLong) {
    throw std::runtime_error(std::string("spdit: ") + what + " ids should be int64, not " +
                             std::string(c10::toString(ids.scalar_type())));
  }
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= weight.size(0)) {
      throw std::runtime_error(
          std::string("spdit: ") + what + " id " + std::to_string(lo < 0 ? lo : hi) +
          " is outside the embedding table of " + std::to_string(weight.size(0)) +
          " rows; do the tokenizer and the model belong together?");
    }
  }
  auto sizes = ids.sizes().vec();
  sizes.push_back(weight.size(1));
  return weight.index_select(0, ids.reshape({-1})).view(sizes);
}

TextLayerNormImpl::TextLayerNormImpl(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
  bias = register_parameter("bias", at::zeros({dim}));
}

at::Tensor TextLayerNormImpl::forward(const at::Tensor& x) const {
  // LibTorch's kernel keeps the statistics in fp32 for BF16 input; called as
  // transformers calls nn.LayerNorm, it rounds exactly as the reference does.
  if (x.scalar_type() == weight.scalar_type()) return at::layer_norm(x, {dim_}, weight, bias, eps_);
  return at::layer_norm(x.to(at::kFloat), {dim_}, weight.to(at::kFloat), bias.to(at::kFloat), eps_)
      .to(x.scalar_type());
}

T5LayerNormImpl::T5LayerNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor T5LayerNormImpl::forward(const at::Tensor& x) const {
  const auto xf = x.to(at::kFloat);
  auto y = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  if (weight.scalar_type() == at::kBFloat16 || weight.scalar_type() == at::kHalf)
    y = y.to(weight.scalar_type());
  return weight * y;
}

at::Tensor softmax_fp32(const at::Tensor& x) {
  return at::softmax(x.to(at::kFloat), -1).to(x.scalar_type());
}

at::ScalarType compute_dtype_for(at::ScalarType stored, const std::string& what) {
  switch (stored) {
    case at::kBFloat16:
    case at::kFloat:
      return stored;
    case at::kHalf:
      return at::kFloat;
    default:
      throw std::runtime_error("spdit: " + what + " is stored as " +
                               std::string(c10::toString(stored)) +
                               "; the text encoders read BF16, F16 or F32 weights");
  }
}

}  // namespace spdit::text
