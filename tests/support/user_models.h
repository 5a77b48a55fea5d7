#pragma once
// Models as a new user writes them from the docs: an SD3-style DiT with joint
// text attention and a PixArt-style DiT with cross-attention to the text,
// 255 image tokens and 29 text tokens, each with the right plan or with one of
// the mistakes users make. Every mistake must end in a clear error (or the
// right result); none may give a silently wrong one.
#include <torch/nn/modules/linear.h>

#include "spdit/attention/attention.h"
#include "spdit/hooks/hookable.h"
#include "spdit/plan/sp_plan.h"

namespace spdit::test {

enum class Mistake {
  kNone,
  kSplitTextPadded,    // the text split too, with auto_pad
  kSplitTextUnpadded,  // the text split too, without auto_pad
  kConcatText,         // [text, image shard] into attention without JointText
  kGatherWrongDim,     // proj_out gathered on the channel dim
  kExpectedDimsSkip,   // hidden_states' expected_dims wrong: its split is skipped
  kPoolSplitText,      // the text split and mean-pooled (no attention sees it)
  kNoGather,           // no SequenceParallelOutput at all
  kUnhookedGather,     // gather on a layer held without Hooked<>
  kUnsplitTable,       // a positional table of the whole sequence, not in the plan
};

constexpr int64_t kImageTokens = 255, kTextTokens = 29;

/// SD3 / Flux-dual-stream style: image and text attend jointly.
struct JointDitImpl : HookableModule, DeclaresSpPlan {
  static constexpr int64_t kHeads = 2, kHeadDim = 8, kDim = kHeads * kHeadDim;
  Hooked<torch::nn::Linear> x_embed, ctx_embed, proj_out;
  torch::nn::Linear qkv{nullptr}, txt_qkv{nullptr}, plain_out{nullptr};
  Mistake mistake;

  explicit JointDitImpl(Mistake m = Mistake::kNone)
      : x_embed(register_module("x_embed", torch::nn::Linear(8, kDim))),
        ctx_embed(register_module("ctx_embed", torch::nn::Linear(6, kDim))),
        proj_out(register_module("proj_out", torch::nn::Linear(kDim, 4))),
        mistake(m) {
    qkv = register_module("qkv", torch::nn::Linear(kDim, 3 * kDim));
    txt_qkv = register_module("txt_qkv", torch::nn::Linear(kDim, 3 * kDim));
    plain_out = register_module("plain_out", torch::nn::Linear(kDim, 4));
  }
  std::vector<std::string> signature() const override {
    return {"hidden_states", "encoder_hidden_states", "positions"};
  }
  SequenceParallelModelPlan sp_plan() const override {
    SequenceParallelInputType in{
        {"hidden_states",
         SequenceParallelInput(1, mistake == Mistake::kExpectedDimsSkip ? 4 : 3).with_auto_pad()}};
    if (mistake == Mistake::kSplitTextPadded || mistake == Mistake::kPoolSplitText) {
      in.push_back({"encoder_hidden_states", SequenceParallelInput(1, 3).with_auto_pad()});
    }
    if (mistake == Mistake::kSplitTextUnpadded) {
      in.push_back({"encoder_hidden_states", SequenceParallelInput(1, 3)});
    }
    SequenceParallelModelPlan plan{{"", inputs(in)}};
    if (mistake == Mistake::kUnhookedGather) {
      plan.push_back({"plain_out", outputs(SequenceParallelOutput(1, 3))});
    } else if (mistake != Mistake::kNoGather) {
      plan.push_back({"proj_out", outputs(SequenceParallelOutput(
                                      mistake == Mistake::kGatherWrongDim ? 2 : 1, 3))});
    }
    return plan;
  }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto x = x_embed(a.tensor("hidden_states"));
    auto t = ctx_embed(a.tensor("encoder_hidden_states"));
    auto heads = [](const at::Tensor& y) {
      return y.view({y.size(0), y.size(1), kHeads, kHeadDim});
    };
    const int64_t text_len = t.size(1);
    if (a.has("positions")) {
      // (S,) positions -> (S, C) table, added to every token.
      auto angle = a.tensor("positions").to(at::kFloat).unsqueeze(1) *
                   at::arange(kDim, at::kFloat).mul(0.01).unsqueeze(0);
      x = x + angle.sin();
    }
    if (mistake == Mistake::kPoolSplitText) {
      x = x + t.mean(1, /*keepdim=*/true);
    } else if (mistake == Mistake::kConcatText) {
      auto qkv_all = qkv->forward(at::cat({t, x}, 1)).chunk(3, -1);
      auto out = attention(heads(qkv_all[0]), heads(qkv_all[1]), heads(qkv_all[2]));
      x = x + out.narrow(1, text_len, x.size(1)).flatten(2);
    } else {
      auto i = qkv->forward(x).chunk(3, -1);
      auto j = txt_qkv->forward(t).chunk(3, -1);
      JointText text{heads(j[0]), heads(j[1]), heads(j[2])};
      auto out = attention(heads(i[0]), heads(i[1]), heads(i[2]), {}, &text);
      x = x + out.narrow(1, text_len, x.size(1)).flatten(2);
    }
    // Unpatchify, as every DiT does: 255 tokens are a 15 x 17 grid.
    auto y = mistake == Mistake::kUnhookedGather ? plain_out->forward(x) : proj_out(x);
    return Outputs(y.view({y.size(0), 15, 17, -1}));
  }
};
TORCH_MODULE(JointDit);

/// PixArt style: self-attention over the image, cross-attention to the text.
struct CrossDitImpl : HookableModule, DeclaresSpPlan {
  static constexpr int64_t kHeads = 2, kHeadDim = 8, kDim = kHeads * kHeadDim;
  Hooked<torch::nn::Linear> x_embed, proj_out;
  torch::nn::Linear ctx_embed{nullptr}, qkv{nullptr}, cross_q{nullptr}, cross_kv{nullptr};
  Mistake mistake;

  explicit CrossDitImpl(Mistake m = Mistake::kNone)
      : x_embed(register_module("x_embed", torch::nn::Linear(8, kDim))),
        proj_out(register_module("proj_out", torch::nn::Linear(kDim, 4))),
        mistake(m) {
    ctx_embed = register_module("ctx_embed", torch::nn::Linear(6, kDim));
    qkv = register_module("qkv", torch::nn::Linear(kDim, 3 * kDim));
    cross_q = register_module("cross_q", torch::nn::Linear(kDim, kDim));
    cross_kv = register_module("cross_kv", torch::nn::Linear(kDim, 2 * kDim));
  }
  std::vector<std::string> signature() const override {
    return {"hidden_states", "encoder_hidden_states"};
  }
  SequenceParallelModelPlan sp_plan() const override {
    SequenceParallelInputType in{{"hidden_states", SequenceParallelInput(1, 3).with_auto_pad()}};
    if (mistake == Mistake::kSplitTextPadded) {
      in.push_back({"encoder_hidden_states", SequenceParallelInput(1, 3).with_auto_pad()});
    }
    return {{"", inputs(in)}, {"proj_out", outputs(SequenceParallelOutput(1, 3))}};
  }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto heads = [](const at::Tensor& y) {
      return y.view({y.size(0), y.size(1), kHeads, kHeadDim});
    };
    auto x = x_embed(a.tensor("hidden_states"));
    auto t = ctx_embed->forward(a.tensor("encoder_hidden_states"));
    auto s = qkv->forward(x).chunk(3, -1);
    x = x + attention(heads(s[0]), heads(s[1]), heads(s[2])).flatten(2);
    auto kv = cross_kv->forward(t).chunk(2, -1);
    x = x + attention(heads(cross_q->forward(x)), heads(kv[0]), heads(kv[1]),
                      AttentionOptions().skip_sp(true))
                .flatten(2);
    return Outputs(proj_out(x));
  }
};
TORCH_MODULE(CrossDit);

/// Seeded inputs, the same on every rank.
struct UserInputs {
  at::Tensor hidden, text;
  explicit UserInputs(int64_t image = kImageTokens, int64_t text_len = kTextTokens) {
    auto gen = at::detail::createCPUGenerator(99);
    hidden = at::randn({1, image, 8}, gen);
    text = at::randn({1, text_len, 6}, gen);
  }
};

}  // namespace spdit::test
