// Qwen-Image's prompt path (QwenImagePipeline._get_qwen_prompt_embeds) against
// scripts/reference/qwen2_text_reference.py: the template, the tokenizer's
// cut and right padding, hidden_states[-1], the rows the mask keeps less the
// first 34, the zero padding and the mask; one prompt, a batch of three of
// different lengths, and a prompt cut short. Then `spdit encode` on the
// fixture folder (tokenizer/ + text_encoder/), as a separate process.
#include <gtest/gtest.h>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/qwen_image_prompt_encoder.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using pipelines::QwenImagePromptEncoder;
using spdit::test::error_of;
using spdit::test::relative_error;

namespace {

constexpr double kF32Tol = 1e-5, kBF16Tol = 2e-2;

std::string fixture(const std::string& name) {
  return std::string(SPDIT_FIXTURES) + "/qwen2/" + name;
}

at::Tensor io(const std::string& name) {
  return checkpoints::Checkpoint::open(fixture("qwen2_io.safetensors")).tensor(name).clone();
}

// The fixture's prompts (the reference script's PROMPTS).
const std::vector<std::string> kPrompts = {
    "a red fox in the snow",
    "A coffee shop entrance features a chalkboard sign reading \"Qwen Coffee \xF0\x9F\x98\x8A $2 "
    "per cup\".",
    " "};

QwenImagePromptEncoder encoder(at::ScalarType dtype = at::ScalarType::Undefined) {
  return QwenImagePromptEncoder::from_model_dir(fixture(""), dtype);
}

void expect_case(QwenImagePromptEncoder& enc, const std::string& name,
                 const std::vector<std::string>& prompts) {
  const auto [ids, mask] = enc.tokenize(prompts, /*warn=*/false);
  EXPECT_TRUE(at::equal(ids, io(name + ".input_ids"))) << name;
  EXPECT_TRUE(at::equal(mask, io(name + ".attention_mask"))) << name;
  const auto out = enc.encode(prompts);
  EXPECT_TRUE(at::equal(out.mask, io(name + ".prompt_embeds_mask"))) << name;
  EXPECT_LT(relative_error(out.embeds, io(name + ".prompt_embeds")), kF32Tol) << name;
}

}  // namespace

TEST(QwenImagePromptEncoder, one_prompt_matches_the_pipeline) {
  auto enc = encoder();
  expect_case(enc, "one", {kPrompts[0]});
}

TEST(QwenImagePromptEncoder, a_batch_is_padded_to_its_longest_with_zeros) {
  auto enc = encoder();
  expect_case(enc, "batch", kPrompts);
  const auto out = enc.encode(kPrompts);
  // Past a row's mask the embeds are zeros, not the encoder's output at padding.
  const auto pad = out.mask.eq(0);
  ASSERT_GT(pad.sum().item<int64_t>(), 0);
  EXPECT_EQ(out.embeds.index({pad}).abs().max().item<float>(), 0.0f);
}

TEST(QwenImagePromptEncoder, a_long_prompt_is_cut_as_the_tokenizer_cuts) {
  auto enc = encoder();
  enc.options().tokenizer_max_length = 12;  // the reference's cut_max_length
  expect_case(enc, "cut", {kPrompts[1]});
  EXPECT_EQ(enc.encode(kPrompts[1]).embeds.size(1), 12);
}

TEST(QwenImagePromptEncoder, bf16_matches_transformers_bf16_run) {
  auto enc = encoder(at::kBFloat16);
  const auto out = enc.encode(kPrompts[1]);
  EXPECT_EQ(out.embeds.scalar_type(), at::kBFloat16);
  EXPECT_LT(relative_error(out.embeds, io("one_bf16.prompt_embeds")), kBF16Tol);
}

TEST(QwenImagePromptEncoder, template_and_folder_mistakes_are_named) {
  EXPECT_EQ(pipelines::qwen_image_apply_template("a {} b", "x"), "a x b");
  EXPECT_NE(error_of([] { pipelines::qwen_image_apply_template("no field", "x"); }).find("\"{}\""),
            std::string::npos);
  auto enc = encoder();
  enc.options().drop_idx = 100000;  // more than the templated prompt has
  EXPECT_NE(error_of([&] { enc.encode("x"); }).find("all of them dropped"), std::string::npos);
  EXPECT_FALSE(QwenImagePromptEncoder::is_model_dir(std::string(SPDIT_FIXTURES) + "/text"));
  EXPECT_TRUE(QwenImagePromptEncoder::is_model_dir(fixture("")));
}

TEST(QwenImagePromptEncoder, spdit_encode_writes_the_embeds_and_masks) {
  spdit::test::TempDir dir;
  const std::string out = dir.path + "/embeds.safetensors";
  const auto r = spdit::test::run_command(std::string(SPDIT_BIN) + " encode --model-dir " +
                                          fixture("") + " --prompt '" + kPrompts[0] +
                                          "' --negative-prompt ' ' --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  auto ckpt = checkpoints::Checkpoint::open(out);
  EXPECT_LT(relative_error(ckpt.tensor("prompt_embeds"), io("one.prompt_embeds")), kF32Tol);
  EXPECT_TRUE(at::equal(ckpt.tensor("prompt_embeds_mask"), io("one.prompt_embeds_mask")));
  // " " is the batch's third prompt; alone it is not padded.
  const auto neg = io("batch.prompt_embeds_mask")[2];
  const int64_t n = neg.sum().item<int64_t>();
  EXPECT_EQ(ckpt.tensor("negative_prompt_embeds").size(1), n);
  EXPECT_LT(relative_error(ckpt.tensor("negative_prompt_embeds")[0],
                           io("batch.prompt_embeds")[2].narrow(0, 0, n)),
            kF32Tol);
}

TEST(QwenImagePromptEncoder, a_written_random_text_side_encodes) {
  // What `spdit new-model --model qwen-image` can write for the pipeline's tests.
  spdit::test::TempDir dir;
  pipelines::write_qwen_image_text_side(dir.path, 48, 7, at::kBFloat16);
  auto enc = QwenImagePromptEncoder::from_model_dir(dir.path);
  const auto out = enc.encode("the quick brown fox");
  EXPECT_EQ(out.embeds.scalar_type(), at::kBFloat16);
  EXPECT_EQ(out.embeds.size(2), 48);
  EXPECT_EQ(out.embeds.size(1), out.mask.sum().item<int64_t>());
  EXPECT_TRUE(at::isfinite(out.embeds).all().item<bool>());
  // The learned merges are used: "the" is one token, not three bytes.
  EXPECT_EQ(enc.tokenizer().encode("the").size(), 1u);
}

TEST(QwenImagePromptEncoder, encode_prompt_keeps_max_sequence_length_rows) {
  // __call__ passes max_sequence_length (512 by default) to encode_prompt, which cuts.
  auto enc = encoder();
  const auto all = enc.encode(kPrompts);
  const auto cut = enc.encode_prompt(kPrompts, 5);
  EXPECT_TRUE(at::equal(cut.embeds, all.embeds.narrow(1, 0, 5)));
  EXPECT_TRUE(at::equal(cut.mask, all.mask.narrow(1, 0, 5)));
  EXPECT_TRUE(at::equal(enc.encode_prompt(kPrompts).embeds, all.embeds));
  EXPECT_NE(error_of([&] { enc.encode_prompt(kPrompts, 1025); }).find("1 to 1024, not 1025"),
            std::string::npos);
}
