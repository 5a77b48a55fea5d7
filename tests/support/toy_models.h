#pragma once
// Small models built only from token-wise layers, so that a sequence-parallel
// run must reproduce the single-rank output exactly.
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "spdit/hooks/hookable.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::test {

/// A RoPE-like table from integer positions: (S,) -> (S, C) and a second output.
struct PosEmbedImpl : HookableModule {
  int64_t channels;
  explicit PosEmbedImpl(int64_t c) : channels(c) {}
  std::vector<std::string> signature() const override { return {"positions"}; }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto pos = a.tensor("positions").to(at::kFloat).unsqueeze(1);
    auto freqs = at::arange(channels, at::kFloat).mul(0.1).unsqueeze(0);
    auto angle = pos * freqs;
    return Outputs({Value(angle.sin()), Value(angle.cos())});
  }
};
TORCH_MODULE(PosEmbed);

/// Pre-norm MLP with a residual: token-wise.
struct MlpBlockImpl : HookableModule {
  Hooked<torch::nn::LayerNorm> norm;
  Hooked<torch::nn::Linear> fc1, fc2;
  explicit MlpBlockImpl(int64_t c)
      : norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})))),
        fc1(register_module("fc1", torch::nn::Linear(c, 2 * c))),
        fc2(register_module("fc2", torch::nn::Linear(2 * c, c))) {}
  std::vector<std::string> signature() const override { return {"x"}; }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto x = a.tensor("x");
    return Outputs(x + fc2(at::gelu(fc1(norm(x)))));
  }
};
TORCH_MODULE(MlpBlock);

/// Shaped like the reference's example plan: root splits hidden_states and
/// encoder_hidden_states on dim 1, pos_embed's output 0 is split on dim 0,
/// proj_out (a plain Linear) is gathered on dim 1.
struct ExampleModelImpl : HookableModule, DeclaresSpPlan {
  Hooked<torch::nn::Linear> x_embed, ctx_embed, proj_out;
  PosEmbed pos_embed{nullptr};
  torch::nn::ModuleList blocks;
  bool auto_pad = false;

  explicit ExampleModelImpl(int64_t c = 16, int depth = 2, bool pad = false)
      : x_embed(register_module("x_embed", torch::nn::Linear(8, c))),
        ctx_embed(register_module("ctx_embed", torch::nn::Linear(6, c))),
        proj_out(register_module("proj_out", torch::nn::Linear(c, 4))),
        auto_pad(pad) {
    pos_embed = register_module("pos_embed", PosEmbed(c));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int i = 0; i < depth; ++i) blocks->push_back(MlpBlock(c));
  }
  std::vector<std::string> signature() const override {
    return {"hidden_states", "encoder_hidden_states", "positions"};
  }
  SequenceParallelModelPlan sp_plan() const override {
    SequenceParallelInput seq{1, 3};
    seq.auto_pad = auto_pad;
    return {
        {"", inputs({{"hidden_states", seq}, {"encoder_hidden_states", seq}})},
        {"pos_embed", inputs({{0, SequenceParallelInput(0, 2).with_split_output()}})},
        {"proj_out", outputs(SequenceParallelOutput{1, 3})},
    };
  }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto pe = pos_embed->call({a["positions"]})[0].tensor();
    auto x = x_embed(a.tensor("hidden_states")) + pe.unsqueeze(0);
    if (a.has("encoder_hidden_states")) x = x + ctx_embed(a.tensor("encoder_hidden_states"));
    for (auto& b : *blocks) x = b->as<MlpBlockImpl>()->call({x})[0].tensor();
    return Outputs(proj_out(x));
  }
};
TORCH_MODULE(ExampleModel);

/// Seeded inputs for ExampleModel with `s` tokens.
struct ExampleInputs {
  at::Tensor hidden, context, positions;
  explicit ExampleInputs(int64_t s, int64_t batch = 2) {
    auto gen = at::detail::createCPUGenerator(1234 + s);
    hidden = at::randn({batch, s, 8}, gen);
    context = at::randn({batch, s, 6}, gen);
    positions = at::arange(s, at::kLong);
  }
};

/// Seeds every parameter from its own generator: ranks running as threads
/// must not share the global one.
template <typename M>
void seed_parameters(M& model, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.3);
}

inline ExampleModel make_example_model(bool auto_pad = false) {
  ExampleModel m(16, 2, auto_pad);
  seed_parameters(m, 7);
  return m;
}

}  // namespace spdit::test
