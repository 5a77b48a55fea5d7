#include "spdit/models/qwen_image.h"

#include <torch/nn/modules/activation.h>

#include <stdexcept>

#include "pipeline_factories.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::models {
namespace {

struct QwenBlockImpl : torch::nn::Module {
  torch::nn::ModuleList img_mod{nullptr}, txt_mod{nullptr};
  Linear img_mod_linear{nullptr}, txt_mod_linear{nullptr};
  DitAttention attn{nullptr};
  FeedForward img_mlp{nullptr}, txt_mlp{nullptr};
  explicit QwenBlockImpl(const QwenImageConfig& c) {
    // img_mod = Sequential(SiLU, Linear): weights at img_mod.1.*
    img_mod = register_module("img_mod", torch::nn::ModuleList());
    img_mod_linear = Linear(c.hidden, 6 * c.hidden);
    img_mod->push_back(torch::nn::SiLU());
    img_mod->push_back(img_mod_linear);
    DitAttentionOptions o{c.hidden, c.heads, c.head_dim, true, true, true, false};
    attn = register_module("attn", DitAttention(o));
    img_mlp = register_module("img_mlp", FeedForward(c.hidden, 4 * c.hidden));
    txt_mod = register_module("txt_mod", torch::nn::ModuleList());
    txt_mod_linear = Linear(c.hidden, 6 * c.hidden);
    txt_mod->push_back(torch::nn::SiLU());
    txt_mod->push_back(txt_mod_linear);
    txt_mlp = register_module("txt_mlp", FeedForward(c.hidden, 4 * c.hidden));
  }
  std::pair<at::Tensor, at::Tensor> forward(at::Tensor img, at::Tensor txt, const at::Tensor& temb,
                                            const Rope& img_rope, const Rope& txt_rope) {
    auto im = img_mod_linear->forward(at::silu(temb)).chunk(6, -1);  // shift, scale, gate x2
    auto tm = txt_mod_linear->forward(at::silu(temb)).chunk(6, -1);
    auto [ai, at_] =
        attn->forward(modulate(plain_layer_norm(img), im[0], im[1]),
                      modulate(plain_layer_norm(txt), tm[0], tm[1]), img_rope, txt_rope);
    img = img + im[2].unsqueeze(1) * ai;
    img =
        img + im[5].unsqueeze(1) * img_mlp->forward(modulate(plain_layer_norm(img), im[3], im[4]));
    txt = txt + tm[2].unsqueeze(1) * at_;
    txt =
        txt + tm[5].unsqueeze(1) * txt_mlp->forward(modulate(plain_layer_norm(txt), tm[3], tm[4]));
    return {img, txt};
  }
};
TORCH_MODULE(QwenBlock);

}  // namespace

QwenImageConfig QwenImageConfig::preset(const std::string& name) {
  QwenImageConfig c;
  if (name == "full") return c;
  if (name == "small") {
    c.hidden = 256, c.heads = 4, c.head_dim = 64, c.blocks = 4, c.text_dim = 256,
    c.axes_dims = {8, 28, 28};
    return c;
  }
  if (name == "tiny") {
    c.hidden = 64, c.heads = 4, c.head_dim = 16, c.blocks = 2, c.text_dim = 32,
    c.axes_dims = {4, 6, 6};
    return c;
  }
  throw std::invalid_argument("spdit: unknown preset '" + name + "'; use tiny, small or full");
}

Outputs QwenEmbedRopeImpl::forward(const BoundArgs& a) {
  const auto& img_ids = a.tensor("img_ids");
  const int64_t t = a["txt_len"].to_int("argument 'txt_len' of pos_embed");
  auto [ic, is] = rope_tables(img_ids, axes_, 10000.0);
  // Text positions continue diagonally after the largest image coordinate.
  const int64_t start = img_ids.numel() ? img_ids.max().item<int64_t>() + 1 : 0;
  auto tpos = at::arange(start, start + t, at::kLong).unsqueeze(1).expand({t, 3});
  auto [tc, ts] = rope_tables(tpos, axes_, 10000.0);
  return Outputs({Value(ic), Value(is), Value(tc), Value(ts)});
}

QwenImageTransformerImpl::QwenImageTransformerImpl(const QwenImageConfig& c)
    : config_(c), proj_out_(register_module("proj_out", Linear(c.hidden, c.in_channels))) {
  img_in_ = register_module("img_in", Linear(c.in_channels, c.hidden));
  txt_norm_ = register_module("txt_norm", RMSNorm(c.text_dim));
  txt_in_ = register_module("txt_in", Linear(c.text_dim, c.hidden));
  auto tte = register_module("time_text_embed", std::make_shared<torch::nn::Module>());
  timestep_embedder_ = tte->register_module("timestep_embedder", TimestepEmbedding(256, c.hidden));
  pos_embed_ = register_module("pos_embed", QwenEmbedRope(c.axes_dims));
  transformer_blocks_ = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.blocks; ++i) transformer_blocks_->push_back(QwenBlock(c));
  auto norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_linear_ = norm_out->register_module("linear", Linear(c.hidden, 2 * c.hidden));
}

SequenceParallelModelPlan QwenImageTransformerImpl::sp_plan() const {
  auto rope = SequenceParallelInput(0, 2).with_split_output().with_auto_pad();
  return {
      {"", inputs({{"hidden_states", SequenceParallelInput(1, 3).with_auto_pad()}})},
      {"pos_embed", inputs({{0, rope}, {1, rope}})},
      {"proj_out", outputs(SequenceParallelOutput{1, 3})},
  };
}

Outputs QwenImageTransformerImpl::forward(const BoundArgs& a) {
  check_floating_inputs("QwenImageTransformer", a,
                        {"hidden_states", "encoder_hidden_states", "timestep"});
  auto img = img_in_->forward(a.tensor("hidden_states"));
  auto txt = txt_in_->forward(txt_norm_->forward(a.tensor("encoder_hidden_states")));
  auto temb = timestep_embedder_->forward(
      timestep_features(a.tensor("timestep").to(at::kFloat) * 1000, 256));
  auto rope = pos_embed_->call({a["img_ids"], Value(txt.size(1))});
  Rope img_rope{rope[0].tensor(), rope[1].tensor()}, txt_rope{rope[2].tensor(), rope[3].tensor()};
  for (auto& b : *transformer_blocks_) {
    BlockWeightsGuard weights(*b);
    std::tie(img, txt) = b->as<QwenBlockImpl>()->forward(img, txt, temb, img_rope, txt_rope);
  }
  auto mod = norm_out_linear_->forward(at::silu(temb)).chunk(2, -1);  // scale, shift
  return Outputs(proj_out_(modulate(plain_layer_norm(img), mod[1], mod[0])));
}

// ---- the pipeline ----------------------------------------------------------

namespace {

class QwenImagePipeline : public PackedImagePipeline {
 public:
  QwenImagePipeline(const QwenImageConfig& c, uint64_t seed, Weights weights, at::ScalarType dtype)
      : PackedImagePipeline(c.in_channels, dtype),
        model_(build<QwenImageTransformer>(c, seed, weights, dtype)) {}
  std::string name() const override { return "qwen-image"; }
  HookableModule& model() override { return *model_; }

  at::Tensor prepare(const RunSize& s, uint64_t seed) override {
    auto gen = at::detail::createCPUGenerator(seed);
    return prepare_packed(s, model_->config().text_dim, gen);
  }

  at::Tensor velocity(const at::Tensor& x, double t, Branch branch) override {
    return model_->call({x, text_of(branch), at::full({x.size(0)}, t), img_ids_})
        .tensor()
        .to(at::kFloat);
  }

  ForwardShapes shapes(const RunSize& s) const override {
    const auto& c = model_->config();
    const int64_t tokens = tokens_of(s);
    ForwardShapes f;
    f.tokens = tokens;
    f.elem_bytes = static_cast<int64_t>(c10::elementSize(dtype()));
    f.sites = {{"", "hidden_states", {s.batch, tokens, c.in_channels}, 1, 0, false},
               {"pos_embed", "output 0", {tokens, c.head_dim / 2}, 0, 0, false},
               {"pos_embed", "output 1", {tokens, c.head_dim / 2}, 0, 0, false},
               {"proj_out", "gather 0", {s.batch, tokens, c.in_channels}, 1, 0, true}};
    f.attention = {{"transformer_blocks.*.attn (joint)", c.blocks, tokens, s.text_len, c.heads,
                    c.head_dim, true}};
    return f;
  }

 private:
  QwenImageTransformer model_;
};

}  // namespace

std::unique_ptr<Pipeline> make_qwen_image_pipeline(const QwenImageConfig& c, uint64_t seed,
                                                   Weights weights, at::ScalarType dtype) {
  return std::make_unique<QwenImagePipeline>(c, seed, weights, dtype);
}

}  // namespace spdit::models
