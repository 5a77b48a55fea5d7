#include "spdit/models/layers.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/dropout.h>

#include "spdit/models/precision.h"
#include "spdit/models/skeleton.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace spdit::models {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias) {
  if (SkeletonScope::active()) {
    weight = register_parameter("weight", lazy_empty({out, in}, at::kFloat));
    if (with_bias) bias = register_parameter("bias", lazy_empty({out}, at::kFloat));
    return;
  }
  // As Linear initialises (kaiming_uniform_ with a = sqrt(5)).
  weight = register_parameter("weight", at::empty({out, in}));
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
    bias = register_parameter("bias", at::empty({out}));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

// Activations follow the weights' dtype: a bf16 model takes fp32 inputs, and
// an fp32 module kept in a bf16 model (precision.h) takes bf16 ones.
at::Tensor LinearImpl::forward(const at::Tensor& x) {
  const auto dtype = weight.scalar_type();
  return at::linear(x.scalar_type() == dtype ? x : x.to(dtype), weight, bias);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  // Statistics in fp32; the weight applied in the input's dtype, as Wan's and
  // diffusers' RMSNorm do.
  auto xf = x.to(at::kFloat);
  auto y = (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_)).to(x.scalar_type());
  return (y * weight).to(x.scalar_type());
}

LayerNormImpl::LayerNormImpl(int64_t dim, bool affine, double eps) : dim_(dim), eps_(eps) {
  if (affine) {
    weight = register_parameter("weight", at::ones({dim}));
    bias = register_parameter("bias", at::zeros({dim}));
  }
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  // All in fp32 (diffusers' FP32LayerNorm), the result in the input's dtype.
  auto f32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; };
  return at::layer_norm(x.to(at::kFloat), {dim_}, f32(weight), f32(bias), eps_).to(x.scalar_type());
}

at::Tensor plain_layer_norm(const at::Tensor& x) {
  return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, {}, {}, 1e-6).to(x.scalar_type());
}

namespace {
// net.0 holds `proj`, as diffusers' GELU module does.
struct GeluProjImpl : torch::nn::Module {
  Linear proj{nullptr};
  GeluProjImpl(int64_t in, int64_t out) { proj = register_module("proj", Linear(in, out)); }
};
TORCH_MODULE(GeluProj);
}  // namespace

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden, int64_t out) {
  net_ = register_module("net", torch::nn::ModuleList());
  GeluProj g(dim, hidden);
  proj_ = g->proj;
  net_->push_back(g);
  net_->push_back(torch::nn::Dropout(0.0));
  out_ = Linear(hidden, out < 0 ? dim : out);
  net_->push_back(out_);
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  return out_->forward(at::gelu(proj_->forward(x), "tanh"));
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t dim, bool gelu) : gelu_(gelu) {
  linear_1_ = register_module("linear_1", Linear(in, dim));
  linear_2_ = register_module("linear_2", Linear(dim, dim));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) {
  auto h = linear_1_->forward(x);
  return linear_2_->forward(gelu_ ? at::gelu(h, "tanh") : at::silu(h));
}

at::Tensor timestep_features(const at::Tensor& t, int64_t dim, at::ScalarType compute) {
  const int64_t half = dim / 2;
  auto freqs = at::exp(at::arange(half, compute) * (-std::log(10000.0) / half));
  auto args = t.to(compute).unsqueeze(-1) * freqs;
  return at::cat({args.cos(), args.sin()}, -1).to(at::kFloat);
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto B = x.size(0), S = x.size(1), H = x.size(2), D = x.size(3);
  auto xf = x.to(at::kFloat).reshape({B, S, H, D / 2, 2});
  auto x0 = xf.select(-1, 0), x1 = xf.select(-1, 1);
  auto c = cos.view({1, S, 1, D / 2}), s = sin.view({1, S, 1, D / 2});
  return at::stack({x0 * c - x1 * s, x0 * s + x1 * c}, -1)
      .reshape({B, S, H, D})
      .to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& ids,
                                              const std::vector<int64_t>& axes_dims, double theta) {
  std::vector<at::Tensor> angles;
  auto pos = ids.to(at::kDouble);
  for (size_t i = 0; i < axes_dims.size(); ++i) {
    const int64_t d = axes_dims[i];
    auto freqs = 1.0 / at::pow(theta, at::arange(0, d, 2, at::kDouble) / static_cast<double>(d));
    angles.push_back(pos.select(1, static_cast<int64_t>(i)).unsqueeze(1) * freqs.unsqueeze(0));
  }
  auto a = at::cat(angles, 1);
  return {a.cos().to(at::kFloat), a.sin().to(at::kFloat)};
}

at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  auto sh = shift.dim() == 2 ? shift.unsqueeze(1) : shift;
  auto sc = scale.dim() == 2 ? scale.unsqueeze(1) : scale;
  return x * (1 + sc) + sh;
}

void seeded_init(torch::nn::Module& model, uint64_t seed, double scale, at::ScalarType dtype,
                 const std::vector<std::string>& keep_fp32) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard no_grad;
  for (auto& p : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = p.key();
    auto& t = p.value();
    if (t.scalar_type() != at::kFloat) t.set_data(at::empty(t.sizes(), at::kFloat));
    const auto want = parameter_dtype(name, dtype, keep_fp32);
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    const bool is_norm = name.find("norm") != std::string::npos && t.dim() == 1;
    if (is_norm && !is_bias) {
      t.copy_(1 + 0.1 * at::randn(t.sizes(), gen));
    } else if (is_bias) {
      t.copy_(0.02 * scale * at::randn(t.sizes(), gen));
    } else {
      // Scaled by fan-in so activations stay unit-scale through deep stacks.
      const double fan_in = t.dim() >= 2 ? static_cast<double>(t.numel() / t.size(0)) : 1.0;
      t.copy_(at::randn(t.sizes(), gen) * (scale / std::sqrt(fan_in)));
    }
    if (want != at::kFloat) t.set_data(t.to(want));
  }
}

void check_floating_inputs(const char* model, const BoundArgs& args,
                           std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const at::Tensor t = args.optional_tensor(name);
    if (!t.defined() || at::isFloatingType(t.scalar_type())) continue;
    throw std::invalid_argument(std::string("spdit: ") + model + ": argument '" + name + "' is a " +
                                c10::toString(t.scalar_type()) +
                                " tensor, but the model computes in floating "
                                "point; convert it first (e.g. .to(at::kFloat))");
  }
}

}  // namespace spdit::models
