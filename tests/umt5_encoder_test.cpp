// umT5's encoder (every block its own position bias) and Wan's prompt side
// against Wan's own wan/modules/t5.py as transcribed by
// scripts/reference/umt5_reference.py: random tiny weights in transformers'
// UMT5 names, the T5 fixture tokenizer's ids of three prompts (40 tokens, so
// that relative positions reach the log-spaced buckets), with the mask.
#include <gtest/gtest.h>

#include <functional>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/wan_prompt_encoder.h"
#include "spdit/text/text_encoder_loading.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::relative_error;

namespace {

std::string wan_text_fixture(const std::string& name) {
  return std::string(SPDIT_FIXTURES) + "/wan_text/" + name;
}

at::Tensor io(const std::string& name) {
  auto ckpt = checkpoints::Checkpoint::open(wan_text_fixture("umt5_io.safetensors"));
  return ckpt.tensor(name).clone();
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

TEST(Umt5Encoder, config_model_type_umt5_gives_every_block_a_position_bias) {
  auto model = text::load_t5_encoder(wan_text_fixture("umt5_encoder"));
  EXPECT_TRUE(model->config().position_bias_per_layer);
  int tables = 0;
  for (const auto& p : model->named_parameters())
    tables += p.key().find("relative_attention_bias") != std::string::npos;
  EXPECT_EQ(tables, model->config().num_layers);
  // And back: to_json says umt5, so that new-model folders load as umT5.
  const auto again = text::T5EncoderConfig::from_json(model->config().to_json(), "round trip");
  EXPECT_TRUE(again.position_bias_per_layer);
}

TEST(Umt5Encoder, last_hidden_state_matches_wans_encoder_with_the_mask) {
  auto model = text::load_t5_encoder(wan_text_fixture("umt5_encoder"));
  const auto got = model->forward(io("input_ids"), io("attention_mask"));
  EXPECT_LT(relative_error(got, io("last_hidden_state")), 1e-5);
}

TEST(Umt5Encoder, sharing_block_0s_bias_would_not_match) {
  // The switch matters: the same weights run as T5 (block 0's bias for all)
  // give a different result, so the test above can fail.
  auto model = text::load_t5_encoder(wan_text_fixture("umt5_encoder"));
  auto config = model->config();
  config.position_bias_per_layer = false;
  text::T5EncoderModel t5(config);
  auto src = model->named_parameters();
  for (auto& p : t5->named_parameters()) p.value().set_data(src[p.key()].clone());
  const auto got = t5->forward(io("input_ids"), io("attention_mask"));
  EXPECT_GT(relative_error(got, io("last_hidden_state")), 1e-3);
}

TEST(Umt5Encoder, prompt_embeds_are_trimmed_to_the_prompt_and_zero_padded) {
  auto model = text::load_t5_encoder(wan_text_fixture("umt5_encoder"));
  const auto mask = io("attention_mask");
  const auto got = pipelines::trim_to_prompt_length(model->forward(io("input_ids"), mask), mask);
  EXPECT_LT(relative_error(got, io("prompt_embeds")), 1e-5);
  // Row 0 has 10 tokens: row 10 on is exactly zero.
  EXPECT_EQ(got[0].narrow(0, 10, 30).abs().max().item<float>(), 0.0f);
  EXPECT_GT(got[0][9].abs().max().item<float>(), 0.0f);
}

TEST(Umt5Encoder, wan_prompt_encoder_tokenizes_and_encodes_as_the_pipeline) {
  auto enc = pipelines::WanPromptEncoder::load(std::string(SPDIT_FIXTURES) + "/text/t5_tokenizer",
                                               wan_text_fixture("umt5_encoder"));
  const auto prompts = spdit::test::read_json(wan_text_fixture("umt5_prompts.json"));
  const int64_t max_length = prompts["max_length"];
  for (int64_t i = 0; i < 3; ++i) {
    // Extra whitespace: prompt_clean removes it first.
    std::string p = prompts["prompts"][i];
    const auto got = enc.encode("  " + p + " \n ", max_length);
    EXPECT_LT(relative_error(got[0], io("prompt_embeds")[i]), 1e-5) << p;
  }
}

TEST(Umt5Encoder, prompt_clean_unescapes_html_and_collapses_whitespace) {
  EXPECT_EQ(pipelines::wan_prompt_clean("  a  &amp;amp; b\t\n c &#39;d&#x27; "), "a & b c 'd'");
  EXPECT_EQ(pipelines::wan_prompt_clean("fish &lt;3"), "fish <3");
  EXPECT_EQ(pipelines::wan_prompt_clean(""), "");
}

TEST(Umt5Encoder, a_t5_folder_is_refused_as_wans_text_encoder) {
  const auto msg = error_of([] {
    pipelines::WanPromptEncoder::load(std::string(SPDIT_FIXTURES) + "/text/t5_tokenizer",
                                      std::string(SPDIT_FIXTURES) + "/text/t5_encoder");
  });
  EXPECT_NE(msg.find("umt5"), std::string::npos) << msg;
}

TEST(Umt5Encoder, a_folder_lacking_a_blocks_position_bias_names_it) {
  spdit::test::TempDir dir;
  auto ckpt = checkpoints::Checkpoint::open(wan_text_fixture("umt5_encoder"));
  std::map<std::string, at::Tensor> w;
  for (const auto& [name, t] : ckpt.tensors()) {
    if (name != "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight")
      w[name] = ckpt.tensor(name);
  }
  checkpoints::write_safetensors(dir.path + "/model.safetensors", w);
  spdit::test::write_file(
      dir.path + "/config.json",
      spdit::test::read_json(wan_text_fixture("umt5_encoder/config.json")).dump());
  const auto msg = error_of([&] { text::load_t5_encoder(dir.path); });
  EXPECT_NE(msg.find("encoder.block.1.layer.0.SelfAttention.relative_attention_"
                     "bias.weight"),
            std::string::npos)
      << msg;
}

TEST(Umt5Encoder, wans_own_pth_file_loads_the_same_encoder) {
  // umt5_wan.pth: the same weights as torch.save wrote them from Wan's
  // T5Encoder (Wan's names), as models_t5_umt5-xxl-enc-bf16.pth holds them.
  auto model = text::load_umt5_encoder_wan_original(wan_text_fixture("umt5_wan.pth"));
  EXPECT_TRUE(model->config().position_bias_per_layer);
  EXPECT_EQ(model->config().num_layers, 2);
  EXPECT_EQ(model->config().d_model, 32);
  const auto got = model->forward(io("input_ids"), io("attention_mask"));
  EXPECT_LT(relative_error(got, io("last_hidden_state")), 1e-5);
  EXPECT_EQ(text::umt5_wan_original_name("encoder.block.3.layer.1.DenseReluDense.wi_0.weight"),
            "blocks.3.ffn.gate.0.weight");
}
