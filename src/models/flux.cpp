#include "spdit/models/flux.h"

#include <stdexcept>

#include "pipeline_factories.h"
#include "spdit/models/pipeline.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::models {
namespace {

// AdaLayerNormZero / Single / Continuous: `linear` of SiLU(temb) chunked.
struct AdaNormImpl : torch::nn::Module {
  Linear linear{nullptr};
  AdaNormImpl(int64_t dim, int64_t chunks) {
    linear = register_module("linear", Linear(dim, chunks * dim));
  }
  std::vector<at::Tensor> operator()(const at::Tensor& temb, int64_t chunks) {
    return linear->forward(at::silu(temb)).chunk(chunks, -1);
  }
};
TORCH_MODULE(AdaNorm);

struct FluxBlockImpl : torch::nn::Module {
  AdaNorm norm1{nullptr}, norm1_context{nullptr};
  DitAttention attn{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
  explicit FluxBlockImpl(const FluxConfig& c) {
    norm1 = register_module("norm1", AdaNorm(c.hidden, 6));
    norm1_context = register_module("norm1_context", AdaNorm(c.hidden, 6));
    DitAttentionOptions o{c.hidden, c.heads, c.head_dim, true, true, true, false};
    attn = register_module("attn", DitAttention(o));
    ff = register_module("ff", FeedForward(c.hidden, c.hidden * c.mlp_ratio));
    ff_context = register_module("ff_context", FeedForward(c.hidden, c.hidden * c.mlp_ratio));
  }
  // Returns (image, text).
  std::pair<at::Tensor, at::Tensor> forward(at::Tensor img, at::Tensor txt, const at::Tensor& temb,
                                            const Rope& img_rope, const Rope& txt_rope) {
    auto m = (*norm1)(temb, 6);  // shift, scale, gate (attn), shift, scale, gate (mlp)
    auto mc = (*norm1_context)(temb, 6);
    auto [attn_img, attn_txt] =
        attn->forward(modulate(plain_layer_norm(img), m[0], m[1]),
                      modulate(plain_layer_norm(txt), mc[0], mc[1]), img_rope, txt_rope);
    img = img + m[2].unsqueeze(1) * attn_img;
    img = img + m[5].unsqueeze(1) * ff->forward(modulate(plain_layer_norm(img), m[3], m[4]));
    txt = txt + mc[2].unsqueeze(1) * attn_txt;
    txt = txt +
          mc[5].unsqueeze(1) * ff_context->forward(modulate(plain_layer_norm(txt), mc[3], mc[4]));
    // fp16's range is exceeded by Flux's text stream; diffusers clips it.
    if (txt.scalar_type() == at::kHalf) txt = txt.clamp(-65504, 65504);
    return {img, txt};
  }
};
TORCH_MODULE(FluxBlock);

struct FluxSingleBlockImpl : torch::nn::Module {
  AdaNorm norm{nullptr};
  Linear proj_mlp{nullptr}, proj_out{nullptr};
  DitAttention attn{nullptr};
  explicit FluxSingleBlockImpl(const FluxConfig& c) {
    norm = register_module("norm", AdaNorm(c.hidden, 3));
    proj_mlp = register_module("proj_mlp", Linear(c.hidden, c.hidden * c.mlp_ratio));
    proj_out = register_module("proj_out", Linear(c.hidden * (1 + c.mlp_ratio), c.hidden));
    DitAttentionOptions o{c.hidden, c.heads, c.head_dim, false, false, false, false};
    attn = register_module("attn", DitAttention(o));
  }
  // Text and image share every weight here; they are kept apart only so that
  // attention knows which tokens are replicated text.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& img, const at::Tensor& txt,
                                            const at::Tensor& temb, const Rope& img_rope,
                                            const Rope& txt_rope) {
    auto m = (*norm)(temb, 3);  // shift, scale, gate
    auto step = [&](const at::Tensor& x, const at::Tensor& attn_out) {
      auto n = modulate(plain_layer_norm(x), m[0], m[1]);
      auto mlp = at::gelu(proj_mlp->forward(n), "tanh");
      return x + m[2].unsqueeze(1) * proj_out->forward(at::cat({attn_out, mlp}, -1));
    };
    auto ni = modulate(plain_layer_norm(img), m[0], m[1]);
    auto nt = modulate(plain_layer_norm(txt), m[0], m[1]);
    auto [ai, at_] = attn->forward(ni, nt, img_rope, txt_rope);
    return {step(img, ai), step(txt, at_)};
  }
};
TORCH_MODULE(FluxSingleBlock);

}  // namespace

FluxConfig FluxConfig::preset(const std::string& name) {
  FluxConfig c;
  if (name == "full") return c;
  if (name == "small") {
    c.hidden = 256, c.heads = 4, c.head_dim = 64, c.dual_blocks = 2, c.single_blocks = 4;
    c.text_dim = 256, c.pooled_dim = 64, c.axes_dims = {8, 28, 28};
    return c;
  }
  if (name == "tiny") {
    c.hidden = 64, c.heads = 4, c.head_dim = 16, c.dual_blocks = 2, c.single_blocks = 2;
    c.text_dim = 32, c.pooled_dim = 16, c.axes_dims = {4, 6, 6};
    return c;
  }
  throw std::invalid_argument("spdit: unknown preset '" + name + "'; use tiny, small or full");
}

Outputs FluxPosEmbedImpl::forward(const BoundArgs& a) {
  auto ids = at::cat({a.tensor("txt_ids"), a.tensor("img_ids")}, 0);
  auto [cos, sin] = rope_tables(ids, axes_, 10000.0);
  return Outputs({Value(cos), Value(sin)});
}

FluxTransformerImpl::FluxTransformerImpl(const FluxConfig& c)
    : config_(c), proj_out_(register_module("proj_out", Linear(c.hidden, c.out_channels))) {
  x_embedder_ = register_module("x_embedder", Linear(c.in_channels, c.hidden));
  context_embedder_ = register_module("context_embedder", Linear(c.text_dim, c.hidden));
  time_text_embed_ = register_module("time_text_embed", std::make_shared<torch::nn::Module>());
  timestep_embedder_ =
      time_text_embed_->register_module("timestep_embedder", TimestepEmbedding(256, c.hidden));
  if (c.guidance) {
    guidance_embedder_ =
        time_text_embed_->register_module("guidance_embedder", TimestepEmbedding(256, c.hidden));
  }
  text_embedder_ =
      time_text_embed_->register_module("text_embedder", TimestepEmbedding(c.pooled_dim, c.hidden));
  pos_embed_ = register_module("pos_embed", FluxPosEmbed(c.axes_dims));
  transformer_blocks_ = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.dual_blocks; ++i) transformer_blocks_->push_back(FluxBlock(c));
  single_transformer_blocks_ =
      register_module("single_transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.single_blocks; ++i)
    single_transformer_blocks_->push_back(FluxSingleBlock(c));
  auto norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_linear_ = norm_out->register_module("linear", Linear(c.hidden, 2 * c.hidden));
}

SequenceParallelModelPlan FluxTransformerImpl::sp_plan() const {
  auto rope = SequenceParallelPartialInput(0, "txt_ids", 2).with_split_output();
  return {
      {"", inputs({{"hidden_states", SequenceParallelInput(1, 3).with_auto_pad()}})},
      {"pos_embed", inputs({{0, rope}, {1, rope}})},
      {"proj_out", outputs(SequenceParallelOutput{1, 3})},
  };
}

Outputs FluxTransformerImpl::forward(const BoundArgs& a) {
  check_floating_inputs(
      "FluxTransformer", a,
      {"hidden_states", "encoder_hidden_states", "pooled_projections", "timestep", "guidance"});
  auto img = x_embedder_->forward(a.tensor("hidden_states"));
  auto txt = context_embedder_->forward(a.tensor("encoder_hidden_states"));
  // Timestep and guidance stay fp32 up to their sinusoids, whatever the
  // model's dtype (diffusers rounds them to bf16 first: at t = 0.7 that moves
  // the timestep by 0.8 of 1000).
  auto temb = timestep_embedder_->forward(
                  timestep_features(a.tensor("timestep").to(at::kFloat) * 1000, 256)) +
              text_embedder_->forward(a.tensor("pooled_projections"));
  if (config_.guidance) {
    // As Flux's own model: a checkpoint with a guidance embedder (dev, Fill)
    // needs the guidance scale; none is assumed.
    auto g = a.optional_tensor("guidance");
    if (!g.defined()) {
      throw std::invalid_argument(
          "spdit: this Flux model has a guidance embedder (FLUX.1-dev, Fill): pass `guidance`, the "
          "distilled guidance scale per sample (3.5 is the usual value for dev)");
    }
    temb = temb + guidance_embedder_->forward(timestep_features(g.to(at::kFloat) * 1000, 256));
  }
  // Position ids as diffusers takes them, (S, 3); the older batched (B, S, 3)
  // (Black Forest Labs' layout, the same ids for every sample) as diffusers
  // still accepts it: the first sample's.
  auto ids_2d = [](const at::Tensor& ids, const char* name) {
    if (ids.dim() == 2 && ids.size(1) == 3) return ids;
    if (ids.dim() == 3 && ids.size(2) == 3) return ids[0];
    throw std::invalid_argument(std::string("spdit: Flux's ") + name +
                                " must be (S, 3) or (B, S, 3); " +
                                std::string(c10::str(ids.sizes())) + " given");
  };
  auto rope = pos_embed_->call({Value(ids_2d(a.tensor("txt_ids"), "txt_ids")),
                                Value(ids_2d(a.tensor("img_ids"), "img_ids"))});
  const int64_t t = txt.size(1);
  Rope joint{rope[0].tensor(), rope[1].tensor()};
  Rope txt_rope = joint.narrow(0, t);
  Rope img_rope = joint.narrow(t, joint.cos.size(0) - t);
  for (auto& b : *transformer_blocks_) {
    BlockWeightsGuard weights(*b);
    std::tie(img, txt) = b->as<FluxBlockImpl>()->forward(img, txt, temb, img_rope, txt_rope);
  }
  for (auto& b : *single_transformer_blocks_) {
    BlockWeightsGuard weights(*b);
    std::tie(img, txt) = b->as<FluxSingleBlockImpl>()->forward(img, txt, temb, img_rope, txt_rope);
  }
  auto mod = norm_out_linear_->forward(at::silu(temb)).chunk(2, -1);  // scale, shift
  img = modulate(plain_layer_norm(img), mod[1], mod[0]);
  return Outputs(proj_out_(img));
}

}  // namespace spdit::models

// ---- the pipeline `spdit run` drives -------------------------------------

namespace spdit::models {
namespace {

class FluxPipeline : public PackedImagePipeline {
 public:
  FluxPipeline(const FluxConfig& c, uint64_t seed, Weights weights, at::ScalarType dtype)
      : PackedImagePipeline(c.in_channels, dtype),
        model_(build<FluxTransformer>(c, seed, weights, dtype)) {
    if (c.in_channels != c.out_channels) {
      throw std::invalid_argument(
          "spdit: a Flux model with " + std::to_string(c.in_channels) + " input and " +
          std::to_string(c.out_channels) +
          " output channels (FLUX.1-Fill: the latent with its image and mask conditions) needs "
          "those conditions, which spdit run does not prepare yet");
    }
  }
  std::string name() const override { return "flux"; }
  HookableModule& model() override { return *model_; }

  at::Tensor prepare(const RunSize& s, uint64_t seed) override {
    auto gen = at::detail::createCPUGenerator(seed);
    auto noise = prepare_packed(s, model_->config().text_dim, gen);
    pooled_ = at::randn({s.batch, model_->config().pooled_dim}, gen);
    negative_pooled_ = at::randn(pooled_.sizes(), negative_generator(gen));
    txt_ids_ = at::zeros({s.text_len, 3}, at::kLong);
    return noise;
  }

  at::Tensor velocity(const at::Tensor& x, double t, Branch branch) override {
    std::vector<Kwarg> args = {
        {"encoder_hidden_states", text_of(branch)},
        {"pooled_projections", branch == Branch::kConditional ? pooled_ : negative_pooled_},
        {"timestep", at::full({x.size(0)}, t)},
        {"img_ids", img_ids_},
        {"txt_ids", txt_ids_}};
    if (model_->config().guidance) args.push_back({"guidance", at::full({x.size(0)}, 3.5)});
    return model_->call({x}, args).tensor().to(at::kFloat);
  }

  ForwardShapes shapes(const RunSize& s) const override {
    const auto& c = model_->config();
    const int64_t tokens = tokens_of(s);
    ForwardShapes f;
    f.tokens = tokens;
    f.elem_bytes = static_cast<int64_t>(c10::elementSize(dtype()));
    f.sites = {
        {"", "hidden_states", {s.batch, tokens, c.in_channels}, 1, 0, false},
        {"pos_embed", "output 0", {s.text_len + tokens, c.head_dim / 2}, 0, s.text_len, false},
        {"pos_embed", "output 1", {s.text_len + tokens, c.head_dim / 2}, 0, s.text_len, false},
        {"proj_out", "gather 0", {s.batch, tokens, c.out_channels}, 1, 0, true}};
    f.attention = {{"transformer_blocks.*.attn (joint)", c.dual_blocks, tokens, s.text_len, c.heads,
                    c.head_dim, true},
                   {"single_transformer_blocks.*.attn (joint)", c.single_blocks, tokens, s.text_len,
                    c.heads, c.head_dim, true}};
    return f;
  }

 private:
  FluxTransformer model_;
  at::Tensor pooled_, negative_pooled_, txt_ids_;
};

}  // namespace

std::unique_ptr<Pipeline> make_flux_pipeline(const FluxConfig& c, uint64_t seed, Weights weights,
                                             at::ScalarType dtype) {
  return std::make_unique<FluxPipeline>(c, seed, weights, dtype);
}

}  // namespace spdit::models
