// T5 v1.1's encoder against transformers' T5EncoderModel as re-stated by
// scripts/reference/text_encoders_reference.py, on the T5 tokenizer's ids of
// three prompts (40 tokens, so that the relative positions reach the
// log-spaced and the clamped buckets of max_distance 20), with BF16 weights
// in two shards and an index, as Flux ships text_encoder_2. The reference
// computes in F32 (attention in F64) on the BF16 values.
//
// Tolerances, as max |ours - reference| / max |reference|: 1e-5 computing in
// F32 (weights converted on load); computing in BF16 as stored (in place),
// kBF16Tol against the reference run in BF16 as transformers runs Flux's T5
// (the same LibTorch kernels; what is left is where the two round differently).
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
  auto ckpt = checkpoints::Checkpoint::open(text_fixture("t5_encoder_io.safetensors"));
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : ckpt.tensors()) out[name] = ckpt.tensor(name).clone();
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// The fixture's weights as one file, edited, with an edited config.json.
void copy_folder(const std::string& to, const std::function<void(nlohmann::json&)>& edit_config,
                 const std::function<void(std::map<std::string, at::Tensor>&)>& edit_weights) {
  auto config = read_json(text_fixture("t5_encoder/config.json"));
  edit_config(config);
  spdit::test::write_file(to + "/config.json", config.dump());
  auto ckpt = checkpoints::Checkpoint::open(text_fixture("t5_encoder"));
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : ckpt.tensors()) w[name] = ckpt.tensor(name);
  edit_weights(w);
  checkpoints::write_safetensors(to + "/model.safetensors", w);
}

}  // namespace

TEST(T5Encoder, relative_position_buckets_follow_the_reference_formula) {
  // 32 buckets, max distance 128 (T5's): values from transformers' formula by hand.
  const auto b = text::t5_relative_position_buckets(1, 200, 32, 128);
  // key - query = 0..199, all "after" (bucket + 16) except 0.
  EXPECT_EQ(b[0][0].item<int64_t>(), 0);
  EXPECT_EQ(b[0][1].item<int64_t>(), 17);
  EXPECT_EQ(b[0][7].item<int64_t>(), 23);
  // 8 + int(log(n / 8) / log(16) * 8): n = 8 -> 8, n = 20 -> 10, n = 50 -> 13, n >= 128 -> 15.
  EXPECT_EQ(b[0][8].item<int64_t>(), 16 + 8);
  EXPECT_EQ(b[0][20].item<int64_t>(), 16 + 10);
  EXPECT_EQ(b[0][50].item<int64_t>(), 16 + 13);
  EXPECT_EQ(b[0][199].item<int64_t>(), 16 + 15);
  // Keys before the query use the lower half.
  const auto before = text::t5_relative_position_buckets(200, 1, 32, 128);
  EXPECT_EQ(before[1][0].item<int64_t>(), 1);
  EXPECT_EQ(before[20][0].item<int64_t>(), 10);
  EXPECT_EQ(before[199][0].item<int64_t>(), 15);
}

TEST(T5Encoder, matches_the_reference_in_bf16_in_place_from_shards) {
  auto model = text::load_t5_encoder(text_fixture("t5_encoder"));
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  for (const auto& p : model->named_parameters())
    EXPECT_FALSE(p.value().storage().resizable()) << p.key();
  auto ref = io();
  const auto out = model->forward(ref.at("input_ids"));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_LE(relative_error(out, ref.at("last_hidden_state_bf16")), kBF16Tol);
  // How far BF16 is from exact, for the record: a bound, not a target.
  EXPECT_LE(relative_error(out, ref.at("last_hidden_state")), 5e-2);
}

TEST(T5Encoder, matches_the_reference_in_f32_with_and_without_a_mask) {
  auto model = text::load_t5_encoder(text_fixture("t5_encoder"),
                                     text::TextEncoderLoadOptions().dtype(at::kFloat));
  EXPECT_EQ(model->dtype(), at::kFloat);
  auto ref = io();
  EXPECT_LE(relative_error(model->forward(ref.at("input_ids")), ref.at("last_hidden_state")),
            kF32Tol);
  const auto masked = model->forward(ref.at("input_ids"), ref.at("attention_mask"));
  EXPECT_LE(relative_error(masked, ref.at("last_hidden_state_masked")), kF32Tol);
  // The mask does change the result (the fixture's prompts are padded).
  EXPECT_GT(relative_error(masked, ref.at("last_hidden_state")), 1e-3);
}

TEST(T5Encoder, reads_the_token_table_under_either_tied_name) {
  spdit::test::TempDir dir;
  copy_folder(
      dir.path, [](auto&) {},
      [](auto& w) {
        w["encoder.embed_tokens.weight"] = w.at("shared.weight");
        w.erase("shared.weight");
      });
  auto model = text::load_t5_encoder(dir.path, text::TextEncoderLoadOptions().dtype(at::kFloat));
  auto ref = io();
  EXPECT_LE(relative_error(model->forward(ref.at("input_ids")), ref.at("last_hidden_state")),
            kF32Tol);
}

TEST(T5Encoder, loading_errors_name_the_file_and_the_tensor) {
  spdit::test::TempDir missing, shaped, bad_ff, one_shard;
  copy_folder(
      missing.path, [](auto&) {},
      [](auto& w) { w.erase("encoder.block.1.layer.1.DenseReluDense.wi_1.weight"); });
  auto e = error_of([&] { text::load_t5_encoder(missing.path); });
  EXPECT_NE(e.find("encoder.block.1.layer.1.DenseReluDense.wi_1.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;

  copy_folder(
      shaped.path, [](nlohmann::json& c) { c["d_ff"] = 64; }, [](auto&) {});
  e = error_of([&] { text::load_t5_encoder(shaped.path); });
  EXPECT_NE(e.find("DenseReluDense.wi_0.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("[48, 32]"), std::string::npos) << e;

  copy_folder(
      bad_ff.path, [](nlohmann::json& c) { c["feed_forward_proj"] = "relu"; }, [](auto&) {});
  e = error_of([&] { text::load_t5_encoder(bad_ff.path); });
  EXPECT_NE(e.find("feed_forward_proj 'relu'"), std::string::npos) << e;

  // A sharded folder missing one of its shards.
  for (const char* f :
       {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"}) {
    std::ifstream in(text_fixture(std::string("t5_encoder/") + f), std::ios::binary);
    std::ofstream(one_shard.path + "/" + f, std::ios::binary) << in.rdbuf();
  }
  e = error_of([&] { text::load_t5_encoder(one_shard.path); });
  EXPECT_NE(e.find("model-00002-of-00002.safetensors"), std::string::npos) << e;
}

TEST(T5Encoder, config_round_trips_through_json) {
  text::T5EncoderConfig c;
  c.d_model = 48;
  c.num_layers = 3;
  const auto back = text::T5EncoderConfig::from_json(c.to_json(), "test");
  EXPECT_EQ(back.d_model, 48);
  EXPECT_EQ(back.num_layers, 3);
  EXPECT_EQ(back.relative_attention_max_distance, 128);
  EXPECT_EQ(back.feed_forward_proj, "gated-gelu");
}

TEST(T5Encoder, a_saved_random_model_loads_back_and_gives_the_same_output) {
  text::T5EncoderConfig c;
  c.vocab_size = 64;
  c.d_model = 16;
  c.d_kv = 4;
  c.d_ff = 24;
  c.num_heads = 4;
  c.num_layers = 2;
  text::T5EncoderModel model(c);
  spdit::test::TempDir dir;
  text::save_text_encoder(*model, c.to_json(), dir.path + "/text_encoder_2", at::kBFloat16);
  auto back = text::load_t5_encoder(dir.path + "/text_encoder_2");
  EXPECT_EQ(back->dtype(), at::kBFloat16);
  EXPECT_EQ(back->config().d_ff, 24);
  const auto ids = at::randint(0, 64, {2, 10}, at::kLong);
  for (auto& p : model->parameters()) p.set_data(p.detach().to(at::kBFloat16));
  EXPECT_TRUE(at::equal(back->forward(ids), model->forward(ids)));
}

TEST(T5Encoder, loads_flux_t5_xxl_at_real_size_without_allocating_it) {
  // Flux's text_encoder_2/config.json values; the shards' data are holes
  // (read as zeros, stored nowhere), so 9.5 GB of BF16 costs nothing here.
  text::T5EncoderConfig real;  // the defaults are T5 v1.1 XXL's
  std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>> first, second;
  {
    models::SkeletonScope skeleton;
    text::T5EncoderModel layout(real);
    for (const auto& p : layout->named_parameters()) {
      (p.key().find("encoder.block.1") == 0 || p.key().find("encoder.block.2") == 0
           ? second
           : first)[p.key()] = {at::kBFloat16, p.value().sizes().vec()};
    }
  }
  spdit::test::TempDir dir;
  spdit::test::write_file(dir.path + "/config.json", real.to_json());
  checkpoints::write_sparse_safetensors(dir.path + "/model-00001-of-00002.safetensors", first);
  checkpoints::write_sparse_safetensors(dir.path + "/model-00002-of-00002.safetensors", second);
  nlohmann::json index;
  for (const auto& [name, spec] : first)
    index["weight_map"][name] = "model-00001-of-00002.safetensors";
  for (const auto& [name, spec] : second)
    index["weight_map"][name] = "model-00002-of-00002.safetensors";
  spdit::test::write_file(dir.path + "/model.safetensors.index.json", index.dump());

  auto model = text::load_t5_encoder(dir.path);
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  int64_t params = 0;
  for (const auto& p : model->parameters()) {
    EXPECT_FALSE(p.storage().resizable());  // views of the mapped shards
    params += p.numel();
  }
  EXPECT_EQ(params, 4762310656);  // T5-XXL's encoder: 4.76 B parameters
}
