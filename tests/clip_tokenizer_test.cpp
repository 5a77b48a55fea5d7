// CLIP's tokenizer against transformers' CLIPTokenizer as re-stated by
// scripts/reference/text_encoders_reference.py (the path without ftfy), on a
// small real vocabulary: ids of prompts with punctuation, contractions,
// accents, CJK, Greek, emoji, controls and whitespace, decomposed accents,
// special tokens written in the text, the empty prompt and one too long.
#include "spdit/text/clip_tokenizer.h"

#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::read_json;
using spdit::test::text_fixture;

namespace {

text::ClipTokenizer fixture_tokenizer() {
  return text::ClipTokenizer::load(text_fixture("clip_tokenizer"));
}

}  // namespace

TEST(ClipTokenizer, ids_match_the_reference_for_every_prompt) {
  const auto tok = fixture_tokenizer();
  const auto cases = read_json(text_fixture("clip_tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    if (c.contains("pad_token")) continue;  // below
    const std::string prompt = c["prompt"].get<std::string>();
    SCOPED_TRACE(prompt);
    EXPECT_EQ(tok.tokenize(prompt), c["tokens"].get<std::vector<std::string>>());
    const auto enc = tok.encode(prompt, 77, /*warn=*/false);
    EXPECT_EQ(enc.ids, c["ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(enc.truncated, c["truncated"].get<std::string>());
  }
}

TEST(ClipTokenizer, frames_with_start_and_end_of_text_and_pads_with_the_configured_token) {
  const auto tok = fixture_tokenizer();
  const auto enc = tok.encode("a red fox", 77, false);
  ASSERT_EQ(enc.ids.size(), 77u);
  EXPECT_EQ(enc.ids.front(), tok.token_id("<|startoftext|>"));
  const auto eos = tok.token_id("<|endoftext|>");
  // Flux's tokenizer pads with <|endoftext|> itself: everything after the prompt is eos.
  for (size_t i = 1 + tok.token_ids("a red fox").size(); i < 77; ++i)
    EXPECT_EQ(enc.ids[i], eos) << i;

  // A config that names another pad token (some CLIP releases pad with "!").
  text::ClipTokenizerConfig bang;
  bang.pad_token = "!";
  const text::ClipTokenizer tok_bang(text_fixture("clip_tokenizer/vocab.json"),
                                     text_fixture("clip_tokenizer/merges.txt"), bang);
  const auto cases = read_json(text_fixture("clip_tokenizer_cases.json"));
  const auto& c = cases.back();
  ASSERT_EQ(c["pad_token"], "!");
  EXPECT_EQ(tok_bang.encode(c["prompt"].get<std::string>(), 77, false).ids,
            c["ids"].get<std::vector<int64_t>>());
}

TEST(ClipTokenizer, a_long_prompt_is_cut_to_77_and_the_cut_text_is_reported) {
  const auto tok = fixture_tokenizer();
  const auto cases = read_json(text_fixture("clip_tokenizer_cases.json"));
  const auto& longest = cases[cases.size() - 2];
  const std::string prompt = longest["prompt"].get<std::string>();
  ASSERT_GT(tok.token_ids(prompt).size(), 75u);
  testing::internal::CaptureStderr();
  const auto enc = tok.encode(prompt);  // 77 from tokenizer_config.json; warns
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(enc.ids.size(), 77u);
  EXPECT_EQ(enc.ids.back(), tok.token_id("<|endoftext|>"));
  EXPECT_FALSE(enc.truncated.empty());
  EXPECT_EQ(enc.truncated, longest["truncated"].get<std::string>());
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  EXPECT_NE(err.find(enc.truncated), std::string::npos) << err;
}

TEST(ClipTokenizer, decode_inverts_encode_for_lower_case_text) {
  const auto tok = fixture_tokenizer();
  const std::string text = "a café at night, 12 red foxes! 東京";
  EXPECT_EQ(tok.decode(tok.token_ids(text)), "a café at night , 1 2 red foxes ! 東 京");
}

TEST(ClipTokenizer, refuses_bad_input_with_clear_messages) {
  const auto tok = fixture_tokenizer();
  try {
    tok.encode(std::string("bad \xC3\x28 utf8"));
    FAIL() << "accepted malformed UTF-8";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok.encode("x", 1), std::runtime_error);
  EXPECT_THROW(tok.decode({1 << 30}), std::runtime_error);

  text::ClipTokenizerConfig empty_pad;
  empty_pad.pad_token = "";
  EXPECT_THROW(text::ClipTokenizer(text_fixture("clip_tokenizer/vocab.json"),
                                   text_fixture("clip_tokenizer/merges.txt"), empty_pad),
               std::runtime_error);

  spdit::test::TempDir dir;
  try {
    text::ClipTokenizer::load(dir.path);
    FAIL() << "loaded an empty folder";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.json"), std::string::npos) << e.what();
  }
  // A vocabulary without the special tokens the config names.
  spdit::test::write_file(dir.path + "/vocab.json", R"({"a": 0, "b": 1})");
  spdit::test::write_file(dir.path + "/merges.txt", "#version: 0.2\na b\n");
  try {
    text::ClipTokenizer::load(dir.path);
    FAIL() << "loaded a vocabulary without <|endoftext|>";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("<|startoftext|>"), std::string::npos) << e.what();
  }
  spdit::test::write_file(dir.path + "/vocab.json", R"(["not", "an", "object"])");
  EXPECT_THROW(text::ClipTokenizer::load(dir.path), std::runtime_error);
}
