#include "spdit/models/wan.h"

#include <stdexcept>

#include "pipeline_factories.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::models {

WanConfig WanConfig::preset(const std::string& name) {
  WanConfig c;
  if (name == "full") return c;
  if (name == "small") {
    c.hidden = 256, c.heads = 4, c.head_dim = 64, c.blocks = 4, c.ffn = 512, c.text_dim = 256;
    return c;
  }
  if (name == "tiny") {
    c.hidden = 64, c.heads = 4, c.head_dim = 16, c.blocks = 2, c.ffn = 128, c.text_dim = 32;
    return c;
  }
  throw std::invalid_argument("spdit: unknown preset '" + name + "'; use tiny, small or full");
}

Outputs WanRopeImpl::forward(const BoundArgs& a) {
  const auto& x = a.tensor("hidden_states");  // (B, C, F, H, W) latents
  const int64_t f = x.size(2), h = x.size(3) / 2, w = x.size(4) / 2;
  const int64_t hw_dim = 2 * (head_dim_ / 6), t_dim = head_dim_ - 2 * hw_dim;
  auto ff = at::arange(f, at::kLong).view({f, 1, 1}).expand({f, h, w});
  auto hh = at::arange(h, at::kLong).view({1, h, 1}).expand({f, h, w});
  auto ww = at::arange(w, at::kLong).view({1, 1, w}).expand({f, h, w});
  auto ids = at::stack({ff, hh, ww}, -1).reshape({-1, 3});
  auto [cos, sin] = rope_tables(ids, {t_dim, hw_dim, hw_dim}, 10000.0);
  return Outputs({Value(cos), Value(sin)});
}

WanConditionEmbedderImpl::WanConditionEmbedderImpl(const WanConfig& c)
    : hidden_(c.hidden), freq_dim_(c.freq_dim), text_len_(c.text_len) {
  time_embedder_ = register_module("time_embedder", TimestepEmbedding(c.freq_dim, c.hidden));
  time_proj_ = register_module("time_proj", Linear(c.hidden, 6 * c.hidden));
  text_embedder_ =
      register_module("text_embedder", TimestepEmbedding(c.text_dim, c.hidden, /*gelu=*/true));
}

Outputs WanConditionEmbedderImpl::forward(const BoundArgs& a) {
  // The timestep in [0, 1000], as Wan's scheduler gives it and Wan's model
  // and diffusers' take it (no scaling here).
  // The sinusoid in float64, as Wan's sinusoidal_embedding_1d computes it.
  auto temb =
      time_embedder_->forward(timestep_features(a.tensor("timestep"), freq_dim_, at::kDouble));
  // The time embedder stays fp32 in a bf16 model; its output is rounded to
  // the model's dtype, as diffusers does.
  temb = temb.to(time_proj_->weight.scalar_type());
  auto proj = time_proj_->forward(at::silu(temb));
  auto shape = proj.sizes().vec();
  shape.back() = hidden_;
  shape.insert(shape.end() - 1, 6);
  auto context = a.tensor("encoder_hidden_states");
  if (context.dim() != 3) {
    throw std::invalid_argument("spdit: Wan's encoder_hidden_states must be (B, T, C); " +
                                std::string(c10::str(context.sizes())) + " given");
  }
  if (context.size(1) > text_len_) {
    throw std::invalid_argument("spdit: Wan takes at most " + std::to_string(text_len_) +
                                " text tokens (text_len); " + std::to_string(context.size(1)) +
                                " given: cut the prompt's embeddings to its token count");
  }
  if (context.size(1) < text_len_) {
    // Zero rows up to text_len, before the embedding, as Wan's model does.
    auto pad = at::zeros({context.size(0), text_len_ - context.size(1), context.size(2)},
                         context.options());
    context = at::cat({context, pad}, 1);
  }
  auto text = text_embedder_->forward(context);
  return Outputs({Value(temb), Value(proj.view(shape)), Value(text)});
}

WanBlockImpl::WanBlockImpl(const WanConfig& c) {
  norm1_ = register_module("norm1", LayerNorm(c.hidden, false));
  DitAttentionOptions self{c.hidden, c.heads, c.head_dim, false, true, false, true};
  attn1_ = register_module("attn1", DitAttention(self));
  norm2_ = register_module("norm2", LayerNorm(c.hidden, true));
  attn2_ = register_module("attn2", DitAttention(self));
  norm3_ = register_module("norm3", LayerNorm(c.hidden, false));
  ffn_ = register_module("ffn", FeedForward(c.hidden, c.ffn));
  scale_shift_table_ = register_parameter("scale_shift_table", at::zeros({1, 6, c.hidden}));
}

Outputs WanBlockImpl::forward(const BoundArgs& a) {
  auto x = a.tensor("hidden_states");
  const auto dtype = x.scalar_type();
  const auto f32 = [](const at::Tensor& t) { return t.to(at::kFloat); };
  // Norms, modulation and the residual sums in fp32, the residual stream kept
  // in the model's dtype: as diffusers runs Wan in bf16 (Wan's own model,
  // fp32 under autocast, rounds only the matrix products).
  const auto temb = f32(a.tensor("temb"));
  // (B, 6, D) per sample, or (B, S, 6, D) per token.
  std::vector<at::Tensor> e;
  if (temb.dim() == 3) {
    e = (scale_shift_table_ + temb).chunk(6, 1);
  } else {
    for (auto& t : (scale_shift_table_.unsqueeze(0) + temb).chunk(6, 2)) e.push_back(t.squeeze(2));
  }
  Rope rope{a.tensor("rope_cos"), a.tensor("rope_sin")};
  auto h = (norm1_->forward(f32(x)) * (1 + e[1]) + e[0]).to(dtype);
  x = (f32(x) + attn1_->forward(h, at::Tensor(), rope, Rope{}).first * e[2]).to(dtype);
  x = x + attn2_->cross(norm2_->forward(f32(x)).to(dtype), a.tensor("encoder_hidden_states"));
  h = (norm3_->forward(f32(x)) * (1 + e[4]) + e[3]).to(dtype);
  return Outputs((f32(x) + f32(ffn_->forward(h)) * e[5]).to(dtype));
}

WanTransformerImpl::WanTransformerImpl(const WanConfig& c)
    : config_(c), proj_out_(register_module("proj_out", Linear(c.hidden, c.out_channels * 4))) {
  patch_embedding_ = register_module(
      "patch_embedding",
      torch::nn::Conv3d(
          torch::nn::Conv3dOptions(c.in_channels, c.hidden, {1, 2, 2}).stride({1, 2, 2})));
  condition_embedder_ = register_module("condition_embedder", WanConditionEmbedder(c));
  rope_ = register_module("rope", WanRope(c.head_dim));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.blocks; ++i) blocks_->push_back(WanBlock(c));
  norm_out_ = register_module("norm_out", LayerNorm(c.hidden, false));
  scale_shift_table_ = register_parameter("scale_shift_table", at::zeros({1, 2, c.hidden}));
}

SequenceParallelModelPlan WanTransformerImpl::sp_plan() const {
  const bool pad = true;
  return {
      {"condition_embedder",
       inputs({{0, SequenceParallelInput(1, 3).with_split_output().with_auto_pad(pad)},
               {1, SequenceParallelInput(1, 4).with_split_output().with_auto_pad(pad)}})},
      {"rope", inputs({{0, SequenceParallelInput(0, 2).with_split_output().with_auto_pad(pad)},
                       {1, SequenceParallelInput(0, 2).with_split_output().with_auto_pad(pad)}})},
      {"blocks.0", inputs({{"hidden_states", SequenceParallelInput(1, 3).with_auto_pad(pad)}})},
      {"proj_out", outputs(SequenceParallelOutput{1, 3})},
  };
}

Outputs WanTransformerImpl::forward(const BoundArgs& a) {
  check_floating_inputs("WanTransformer", a,
                        {"hidden_states", "timestep", "encoder_hidden_states"});
  const auto& video = a.tensor("hidden_states");
  const int64_t B = video.size(0), f = video.size(2), h = video.size(3) / 2, w = video.size(4) / 2;
  const auto dtype = patch_embedding_->weight.scalar_type();
  auto x = patch_embedding_->forward(video.to(dtype)).flatten(2).transpose(1, 2);  // (B, S, D)
  auto rope = rope_->call({video});
  auto cond = condition_embedder_->call({a["timestep"], a["encoder_hidden_states"]});
  const auto& temb = cond[0].tensor();
  for (auto& block : *blocks_) {
    BlockWeightsGuard weights(*block);
    x = block->as<WanBlockImpl>()->call({x, cond[2], cond[1], rope[0], rope[1]}).tensor();
  }
  at::Tensor shift, scale;
  if (temb.dim() == 2) {
    auto ss = (scale_shift_table_ + temb.unsqueeze(1)).chunk(2, 1);
    shift = ss[0], scale = ss[1];
  } else {
    auto ss = (scale_shift_table_.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, 2);
    shift = ss[0].squeeze(2), scale = ss[1].squeeze(2);
  }
  x = proj_out_((norm_out_->forward(x.to(at::kFloat)) * (1 + scale) + shift).to(dtype));
  // (B, f*h*w, 2*2*C) -> (B, C, f, 2h, 2w)
  return Outputs(x.view({B, f, h, w, 1, 2, 2, config_.out_channels})
                     .permute({0, 7, 1, 4, 2, 5, 3, 6})
                     .reshape({B, config_.out_channels, f, 2 * h, 2 * w}));
}

// ---- the pipeline ----------------------------------------------------------

namespace {

class WanPipeline : public Pipeline {
 public:
  WanPipeline(const WanConfig& c, uint64_t seed, Weights weights, at::ScalarType dtype)
      : Pipeline(dtype), model_(build<WanTransformer>(c, seed, weights, dtype)) {}
  std::string name() const override { return "wan"; }
  HookableModule& model() override { return *model_; }

  void check_size(const RunSize& s) const override {
    check_image_size(s);
    if (s.text_len > model_->config().text_len) {
      throw std::invalid_argument("spdit: --text-len " + std::to_string(s.text_len) +
                                  ": Wan takes at most " +
                                  std::to_string(model_->config().text_len) + " text tokens");
    }
    if (s.frames < 1 || (s.frames - 1) % 4 != 0) {
      throw std::invalid_argument(
          "spdit: --frames " + std::to_string(s.frames) +
          " must be 4k+1 (1, 5, 9, ...): Wan's VAE keeps the first frame and "
          "compresses the rest 4x");
    }
  }

  at::Tensor prepare(const RunSize& s, uint64_t seed) override {
    check_size(s);
    const auto& c = model_->config();
    auto gen = at::detail::createCPUGenerator(seed);
    text_ = at::randn({s.batch, s.text_len, c.text_dim}, gen);
    auto noise =
        at::randn({s.batch, c.in_channels, (s.frames - 1) / 4 + 1, s.height / 8, s.width / 8}, gen);
    negative_text_ = at::randn(text_.sizes(), negative_generator(gen));
    return noise;
  }

  at::Tensor velocity(const at::Tensor& x, double t, Branch branch) override {
    // Flow time t in [0, 1] is Wan's timestep 1000 t.
    const auto& text = branch == Branch::kConditional ? text_ : negative_text_;
    return model_
        ->call({x},
               {{"timestep", at::full({x.size(0)}, 1000 * t)}, {"encoder_hidden_states", text}})
        .tensor()
        .to(at::kFloat);
  }

  ForwardShapes shapes(const RunSize& s) const override {
    const auto& c = model_->config();
    const int64_t tokens = ((s.frames - 1) / 4 + 1) * (s.height / 16) * (s.width / 16);
    ForwardShapes f;
    f.tokens = tokens;
    f.elem_bytes = static_cast<int64_t>(c10::elementSize(dtype()));
    f.sites = {{"rope", "output 0", {tokens, c.head_dim / 2}, 0, 0, false},
               {"rope", "output 1", {tokens, c.head_dim / 2}, 0, 0, false},
               {"blocks.0", "hidden_states", {s.batch, tokens, c.hidden}, 1, 0, false},
               {"proj_out", "gather 0", {s.batch, tokens, c.out_channels * 4}, 1, 0, true}};
    f.attention = {{"blocks.*.attn1 (self)", c.blocks, tokens, 0, c.heads, c.head_dim, true},
                   {"blocks.*.attn2 (cross, skip_sp)", c.blocks, tokens, c.text_len, c.heads,
                    c.head_dim, false}};
    return f;
  }

  at::Tensor preview(const at::Tensor& latents) const override {
    auto rgb = latents[0].select(1, 0).narrow(0, 0, 3).to(at::kFloat);  // first frame
    auto lo = rgb.amin({1, 2}, true), hi = rgb.amax({1, 2}, true);
    return ((rgb - lo) / (hi - lo + 1e-6)).clamp(0, 1);
  }

 private:
  WanTransformer model_;
  at::Tensor text_, negative_text_;
};

}  // namespace

std::unique_ptr<Pipeline> make_wan_pipeline(const WanConfig& c, uint64_t seed, Weights weights,
                                            at::ScalarType dtype) {
  return std::make_unique<WanPipeline>(c, seed, weights, dtype);
}

}  // namespace spdit::models
