// The text model of Qwen2.5-VL against transformers' (multimodal RoPE, GQA,
// Qwen2RMSNorm, SwiGLU; hidden_states[-1] after the final norm) as re-stated
// by scripts/reference/qwen2_text_reference.py, on a tiny random model
// (hidden 64, 4 heads, 2 KV heads, 2 layers) and a batch of two rows, the
// second right-padded. The reference computes in F64; once more in BF16 as
// transformers runs Qwen-Image's text encoder.
//
// Tolerances, as max |ours - reference| / max |reference|: 1e-5 in F32, 2e-2
// in BF16 against the BF16 reference.
#include <gtest/gtest.h>

#include <functional>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/text/text_encoder_loading.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::error_of;
using spdit::test::read_json;
using spdit::test::relative_error;
using spdit::test::write_file;

namespace {

constexpr double kF32Tol = 1e-5, kBF16Tol = 2e-2;

std::string fixture(const std::string& name) {
  return std::string(SPDIT_FIXTURES) + "/qwen2/" + name;
}

at::Tensor io(const std::string& name) {
  return checkpoints::Checkpoint::open(fixture("qwen2_io.safetensors")).tensor(name).clone();
}

// The fixture's encoder with its tensors renamed / its config edited.
void copy_encoder(
    const std::string& to, const std::function<std::string(const std::string&)>& rename,
    const std::function<void(nlohmann::json&)>& edit_config = [](nlohmann::json&) {}) {
  auto config = read_json(fixture("text_encoder/config.json"));
  edit_config(config);
  write_file(to + "/config.json", config.dump());
  auto ckpt = checkpoints::Checkpoint::open(fixture("text_encoder"));
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : ckpt.tensors()) {
    const auto n = rename(name);
    if (!n.empty()) w[n] = ckpt.tensor(name);
  }
  checkpoints::write_safetensors(to + "/model.safetensors", w);
}

}  // namespace

TEST(Qwen2TextModel, f32_matches_the_reference_with_padding) {
  auto model = text::load_qwen2_text_model(fixture("text_encoder"));
  EXPECT_EQ(model->dtype(), at::kFloat);
  const auto mask = io("model.attention_mask");
  ASSERT_EQ(mask.sum().item<int64_t>() < mask.numel(), true) << "the fixture should pad a row";
  const auto got = model->forward(io("model.input_ids"), mask);
  // Padded rows are the reference's too (transformers computes them); compare all.
  EXPECT_LT(relative_error(got, io("model.hidden_f64")), kF32Tol);
}

TEST(Qwen2TextModel, bf16_matches_transformers_bf16_run) {
  auto model = text::load_qwen2_text_model(fixture("text_encoder"),
                                           text::TextEncoderLoadOptions().dtype(at::kBFloat16));
  const auto got = model->forward(io("model.input_ids"), io("model.attention_mask"));
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  const auto keep = io("model.attention_mask").ne(0);
  EXPECT_LT(relative_error(got.index({keep}), io("model.hidden_bf16").index({keep})), kBF16Tol);
}

TEST(Qwen2TextModel, a_padded_row_equals_the_row_alone) {
  // Right padding must not change a row's tokens (causal mask, positions from the mask).
  auto model = text::load_qwen2_text_model(fixture("text_encoder"));
  const auto ids = io("model.input_ids"), mask = io("model.attention_mask");
  const int64_t n = mask[1].sum().item<int64_t>();
  const auto alone = model->forward(ids[1].narrow(0, 0, n).unsqueeze(0));
  const auto batched = model->forward(ids, mask)[1].narrow(0, 0, n);
  EXPECT_LT(relative_error(alone[0], batched), kF32Tol);
}

TEST(Qwen2TextModel, reads_the_older_names_and_skips_the_vision_tower) {
  // transformers < 4.52 saved model.layers.N... beside visual.*; the vision
  // tower and lm_head are in the folder and not parameters of the text model.
  spdit::test::TempDir dir;
  copy_encoder(dir.path, [](const std::string& n) {
    const std::string p = "model.language_model.";
    if (n.rfind(p, 0) == 0) return "model." + n.substr(p.size());
    if (n.rfind("model.visual.", 0) == 0) return "visual." + n.substr(13);
    return n;
  });
  auto model = text::load_qwen2_text_model(dir.path);
  for (const auto& p : model->named_parameters(true))
    EXPECT_EQ(p.key().find("visual"), std::string::npos) << p.key();
  EXPECT_LT(relative_error(model->forward(io("model.input_ids"), io("model.attention_mask")),
                           io("model.hidden_f64")),
            kF32Tol);
}

TEST(Qwen2TextModel, config_reads_a_nested_text_config) {
  // transformers >= 4.53 writes the language model's fields under text_config.
  auto c = read_json(fixture("text_encoder/config.json"));
  nlohmann::json nested = {{"model_type", "qwen2_5_vl"}, {"text_config", c}};
  nested["text_config"]["hidden_size"] = 128;
  nested["text_config"]["num_attention_heads"] = 8;
  const auto parsed = text::Qwen2TextConfig::from_json(nested.dump(), "config.json");
  EXPECT_EQ(parsed.hidden_size, 128);
  EXPECT_EQ(parsed.num_key_value_heads, 2);
  EXPECT_EQ(parsed.head_dim(), 16);
}

TEST(Qwen2TextModel, mistakes_are_named) {
  spdit::test::TempDir dir;
  auto config_error = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto c = read_json(fixture("text_encoder/config.json"));
    edit(c);
    return error_of([&] { text::Qwen2TextConfig::from_json(c.dump(), "config.json"); });
  };
  EXPECT_NE(config_error([](nlohmann::json& c) { c["hidden_act"] = "gelu"; }).find("'gelu'"),
            std::string::npos);
  EXPECT_NE(config_error([](nlohmann::json& c) {
              c["rope_scaling"]["type"] = "yarn";
            }).find("'yarn' is not implemented"),
            std::string::npos);
  EXPECT_NE(config_error([](nlohmann::json& c) {
              c["num_key_value_heads"] = 3;
            }).find("multiple of num_key_value_heads 3"),
            std::string::npos);
  EXPECT_NE(config_error([](nlohmann::json& c) {
              c["rope_scaling"]["mrope_section"] = {4, 4, 4};
            }).find("head_dim / 2 = 8"),
            std::string::npos);
  EXPECT_NE(config_error([](nlohmann::json& c) { c["model_type"] = "llama"; }).find("'llama'"),
            std::string::npos);
  // Names of another model: refused, naming what the folder holds.
  copy_encoder(dir.path, [](const std::string& n) { return "transformer." + n; });
  const auto e = error_of([&] { text::load_qwen2_text_model(dir.path); });
  EXPECT_NE(e.find("model.language_model.embed_tokens.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("transformer."), std::string::npos) << e;
  // A layer missing: named.
  copy_encoder(dir.path, [](const std::string& n) {
    return n.find("layers.1.mlp.up_proj") == std::string::npos ? n : std::string();
  });
  EXPECT_NE(error_of([&] { text::load_qwen2_text_model(dir.path); }).find("layers.1.mlp.up_proj"),
            std::string::npos);
  auto model = text::load_qwen2_text_model(fixture("text_encoder"));
  EXPECT_NE(error_of([&] {
              model->forward(at::tensor({100000L}).view({1, 1}));
            }).find("outside the embedding table"),
            std::string::npos);
}

TEST(Qwen2TextModel, a_written_encoder_reads_back) {
  // save_qwen2_text_encoder (for random-weight model folders) writes what the loader reads.
  auto model = text::load_qwen2_text_model(fixture("text_encoder"));
  spdit::test::TempDir dir;
  text::save_qwen2_text_encoder(*model, dir.path + "/text_encoder", at::kFloat);
  auto back = text::load_qwen2_text_model(dir.path + "/text_encoder");
  const auto ids = io("model.input_ids"), mask = io("model.attention_mask");
  EXPECT_TRUE(at::equal(back->forward(ids, mask), model->forward(ids, mask)));
}
