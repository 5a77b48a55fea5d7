// CLIP's text tower against transformers' CLIPTextModel as re-stated by
// scripts/reference/text_encoders_reference.py (float64), on the tokenizer's
// ids of three prompts, with the fixture's random F32 weights read from a
// text_encoder-like folder (config.json + model.safetensors).
//
// Tolerances, as max |ours - reference| / max |reference|: 1e-5 computing in
// F32 against the F64 reference (rounding only); computing in BF16, kBF16Tol
// against the reference run in BF16 as transformers runs it (the same
// LibTorch kernels; what is left is where the two round differently).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/models/skeleton.h"
#include "spdit/text/text_encoder_loading.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::read_json;
using spdit::test::relative_error;
using spdit::test::text_fixture;

namespace {

constexpr double kF32Tol = 1e-5, kBF16Tol = 2e-2;

std::map<std::string, at::Tensor> io() {
  auto ckpt = checkpoints::Checkpoint::open(text_fixture("clip_text_io.safetensors"));
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : ckpt.tensors()) out[name] = ckpt.tensor(name).clone();
  return out;
}

// A copy of the fixture's folder with config.json edited and the weights
// transformed, for the cases the fixture does not hold as they are.
void copy_folder(const std::string& to, const std::function<void(nlohmann::json&)>& edit_config,
                 const std::function<void(std::map<std::string, at::Tensor>&)>& edit_weights) {
  auto config = read_json(text_fixture("clip_text/config.json"));
  edit_config(config);
  spdit::test::write_file(to + "/config.json", config.dump());
  auto ckpt = checkpoints::Checkpoint::open(text_fixture("clip_text/model.safetensors"));
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : ckpt.tensors()) w[name] = ckpt.tensor(name);
  edit_weights(w);
  checkpoints::write_safetensors(to + "/model.safetensors", w);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ClipTextModel, matches_the_reference_in_f32_with_weights_in_place) {
  auto model = text::load_clip_text_model(text_fixture("clip_text"));
  EXPECT_EQ(model->dtype(), at::kFloat);
  // In place: the parameters are the file's mapped pages (a from_blob storage cannot be resized).
  for (const auto& p : model->named_parameters())
    EXPECT_FALSE(p.value().storage().resizable()) << p.key();
  auto ref = io();
  const auto out = model->forward(ref.at("input_ids"));
  EXPECT_LE(relative_error(out.last_hidden_state, ref.at("last_hidden_state")), kF32Tol);
  // eos_token_id 2 (Flux's config.json) in a vocabulary whose <|endoftext|> is
  // not 49407: transformers pools at the first id 2, here none, so row 0.
  EXPECT_LE(relative_error(out.pooled, ref.at("pooled_config_eos")), kF32Tol);
}

TEST(ClipTextModel, pools_at_the_first_eos_token_when_the_config_names_it) {
  spdit::test::TempDir dir;
  const auto vocab = read_json(text_fixture("clip_tokenizer/vocab.json"));
  const int64_t eos = vocab.at("<|endoftext|>").get<int64_t>();
  copy_folder(
      dir.path, [&](nlohmann::json& c) { c["eos_token_id"] = eos; }, [](auto&) {});
  auto model = text::load_clip_text_model(dir.path);
  auto ref = io();
  const auto out = model->forward(ref.at("input_ids"));
  EXPECT_LE(relative_error(out.pooled, ref.at("pooled_eos")), kF32Tol);
  // Not the bos row: the pooled state is the end of text's.
  EXPECT_GT(relative_error(out.pooled, ref.at("pooled_config_eos")), 1e-2);
}

TEST(ClipTextModel, pools_at_the_first_49407_when_every_prompt_holds_it) {
  // A real CLIP vocabulary: <|endoftext|> = 49407, the highest id; Flux pads with it.
  text::ClipTextConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 1;
  c.max_position_embeddings = 8;
  c.eos_token_id = 2;  // the legacy value: ignored when every row holds 49407
  text::ClipTextModel model(c);
  const auto ids = at::tensor({49406, 5, 7, 49407, 49407, 49407, 49407, 49407, 49406, 9, 49407,
                               49407, 49407, 49407, 49407, 49407},
                              at::kLong)
                       .view({2, 8});
  const auto out = model->forward(ids);
  EXPECT_TRUE(at::equal(out.pooled[0], out.last_hidden_state[0][3]));
  EXPECT_TRUE(at::equal(out.pooled[1], out.last_hidden_state[1][2]));
  // A row without 49407: the first token equal to eos_token_id instead.
  const auto other = at::tensor({49406, 2, 7, 2, 0, 0, 0, 0}, at::kLong).view({1, 8});
  const auto out2 = model->forward(other);
  EXPECT_TRUE(at::equal(out2.pooled[0], out2.last_hidden_state[0][1]));
}

TEST(ClipTextModel, runs_in_bf16_when_the_weights_are_bf16) {
  spdit::test::TempDir dir;
  const auto vocab = read_json(text_fixture("clip_tokenizer/vocab.json"));
  copy_folder(
      dir.path, [&](nlohmann::json& c) { c["eos_token_id"] = vocab.at("<|endoftext|>"); },
      [](auto& w) {
        for (auto& [name, t] : w) t = t.to(at::kBFloat16);
      });
  auto model = text::load_clip_text_model(dir.path);
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  auto ref = io();
  const auto out = model->forward(ref.at("input_ids"));
  EXPECT_EQ(out.last_hidden_state.scalar_type(), at::kBFloat16);
  EXPECT_LE(relative_error(out.last_hidden_state, ref.at("last_hidden_state_bf16")), kBF16Tol);
  EXPECT_LE(relative_error(out.pooled, ref.at("pooled_eos_bf16")), kBF16Tol);
  // How far BF16 is from exact, for the record (weights rounded too): a bound, not a target.
  EXPECT_LE(relative_error(out.last_hidden_state, ref.at("last_hidden_state")), 5e-2);
  // And converted back to F32 on request, it is exact again up to the weights' rounding.
  auto f32 = text::load_clip_text_model(dir.path, text::TextEncoderLoadOptions().dtype(at::kFloat));
  EXPECT_EQ(f32->dtype(), at::kFloat);
}

TEST(ClipTextModel, loading_errors_name_the_file_and_the_tensor) {
  spdit::test::TempDir missing, shaped, no_config, bad_act;
  copy_folder(
      missing.path, [](auto&) {},
      [](auto& w) { w.erase("text_model.encoder.layers.1.mlp.fc2.bias"); });
  auto e = error_of([&] { text::load_clip_text_model(missing.path); });
  EXPECT_NE(e.find("text_model.encoder.layers.1.mlp.fc2.bias"), std::string::npos) << e;
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;

  copy_folder(
      shaped.path, [](nlohmann::json& c) { c["intermediate_size"] = 48; }, [](auto&) {});
  e = error_of([&] { text::load_clip_text_model(shaped.path); });
  EXPECT_NE(e.find("text_model.encoder.layers.0.mlp.fc1.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("[64, 32]"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;

  copy_folder(
      no_config.path, [](auto&) {}, [](auto&) {});
  std::remove((no_config.path + "/config.json").c_str());
  e = error_of([&] { text::load_clip_text_model(no_config.path); });
  EXPECT_NE(e.find("no config.json"), std::string::npos) << e;

  copy_folder(
      bad_act.path, [](nlohmann::json& c) { c["hidden_act"] = "relu"; }, [](auto&) {});
  e = error_of([&] { text::load_clip_text_model(bad_act.path); });
  EXPECT_NE(e.find("hidden_act 'relu'"), std::string::npos) << e;
}

TEST(ClipTextModel, refuses_inputs_it_cannot_take) {
  auto model = text::load_clip_text_model(text_fixture("clip_text"));
  auto e = error_of([&] { model->forward(at::zeros({1, 78}, at::kLong)); });
  EXPECT_NE(e.find("max_position_embeddings"), std::string::npos) << e;
  e = error_of([&] { model->forward(at::zeros({1, 5}, at::kInt)); });
  EXPECT_NE(e.find("int64"), std::string::npos) << e;
  e = error_of([&] { model->forward(at::full({1, 5}, 100000, at::kLong)); });
  EXPECT_NE(e.find("outside the embedding table"), std::string::npos) << e;
}

TEST(ClipTextModel, config_round_trips_through_json) {
  text::ClipTextConfig c;
  c.hidden_size = 64;
  c.num_attention_heads = 2;
  c.eos_token_id = 2;
  const auto back = text::ClipTextConfig::from_json(c.to_json(), "test");
  EXPECT_EQ(back.hidden_size, 64);
  EXPECT_EQ(back.num_attention_heads, 2);
  EXPECT_EQ(back.eos_token_id, 2);
  EXPECT_EQ(back.vocab_size, c.vocab_size);
  EXPECT_THROW(
      text::ClipTextConfig::from_json(R"({"hidden_size": 10, "num_attention_heads": 3})", "x"),
      std::runtime_error);
}

TEST(ClipTextModel, a_saved_random_model_loads_back_and_gives_the_same_output) {
  text::ClipTextConfig c;
  c.vocab_size = 100;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 2;
  c.max_position_embeddings = 12;
  c.eos_token_id = 99;
  text::ClipTextModel model(c);
  spdit::test::TempDir dir;
  text::save_text_encoder(*model, c.to_json(), dir.path + "/text_encoder", at::kFloat);
  auto back = text::load_clip_text_model(dir.path + "/text_encoder");
  EXPECT_EQ(back->config().eos_token_id, 99);
  const auto ids =
      at::tensor({98, 3, 4, 99, 99, 99, 99, 99, 99, 99, 99, 99}, at::kLong).view({1, 12});
  const auto a = model->forward(ids), b = back->forward(ids);
  EXPECT_TRUE(at::equal(a.last_hidden_state, b.last_hidden_state));
  EXPECT_TRUE(at::equal(b.pooled[0], b.last_hidden_state[0][3]));
}

TEST(ClipTextModel, loads_clip_l_at_real_size_in_place) {
  // ViT-L/14's text tower (the defaults) as Flux's text_encoder/ holds it, the
  // file's data a hole (zeros stored nowhere).
  text::ClipTextConfig real;
  real.eos_token_id = 2;  // as Flux's config.json
  std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>> layout;
  {
    models::SkeletonScope skeleton;
    text::ClipTextModel model(real);
    for (const auto& p : model->named_parameters())
      layout[p.key()] = {at::kBFloat16, p.value().sizes().vec()};
  }
  spdit::test::TempDir dir;
  spdit::test::write_file(dir.path + "/config.json", real.to_json());
  checkpoints::write_sparse_safetensors(dir.path + "/model.safetensors", layout);
  auto model = text::load_clip_text_model(dir.path);
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  int64_t params = 0;
  for (const auto& p : model->parameters()) {
    EXPECT_FALSE(p.storage().resizable());
    params += p.numel();
  }
  EXPECT_EQ(params, 123060480);  // CLIP-L's text tower: 123 M parameters
  // Runs at real size (zeros in, finite out).
  const auto out = model->forward(at::full({1, 77}, 49407, at::kLong));
  EXPECT_EQ(out.pooled.sizes(), (std::vector<int64_t>{1, 768}));
  EXPECT_TRUE(at::isfinite(out.last_hidden_state.to(at::kFloat)).all().item<bool>());
}
