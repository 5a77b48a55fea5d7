// T5's tokenizer against SentencePiece's Python binding (the same library
// version) as T5Tokenizer uses it, on a small unigram spiece.model with T5's
// ids: the pieces, </s> (1), <pad> (0) to max_length; long prompts cut.
#include "spdit/text/t5_tokenizer.h"

#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::read_json;
using spdit::test::text_fixture;

TEST(T5Tokenizer, ids_match_the_reference_at_two_lengths) {
  const auto tok = text::T5Tokenizer::load(text_fixture("t5_tokenizer"));
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 0);
  const auto cases = read_json(text_fixture("t5_tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 16u);
  int cut = 0;
  for (const auto& c : cases) {
    const std::string prompt = c["prompt"].get<std::string>();
    const int64_t max_length = c["max_length"].get<int64_t>();
    SCOPED_TRACE(prompt + " @ " + std::to_string(max_length));
    const auto enc = tok.encode(prompt, max_length, /*warn=*/false);
    EXPECT_EQ(enc.ids, c["ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(enc.truncated, c["truncated"].get<std::string>());
    cut += !enc.truncated.empty();
  }
  EXPECT_GE(cut, 4);  // the cases do exercise truncation
}

TEST(T5Tokenizer, a_long_prompt_keeps_eos_last_and_warns) {
  const auto tok = text::T5Tokenizer::load(text_fixture("t5_tokenizer/spiece.model"));
  std::string prompt;
  for (int i = 0; i < 20; ++i) prompt += "a red fox in the snow ";
  testing::internal::CaptureStderr();
  const auto enc = tok.encode(prompt, 16);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(enc.ids.size(), 16u);
  EXPECT_EQ(enc.ids.back(), 1);
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  // Short prompts: eos then pads.
  const auto short_enc = tok.encode("a fox", 16, false);
  const auto body = tok.token_ids("a fox");
  ASSERT_LT(body.size(), 15u);
  EXPECT_EQ(short_enc.ids[body.size()], 1);
  for (size_t i = body.size() + 1; i < 16; ++i) EXPECT_EQ(short_enc.ids[i], 0);
  EXPECT_EQ(tok.decode(body), "a fox");
}

TEST(T5Tokenizer, refuses_bad_input_with_clear_messages) {
  const auto tok = text::T5Tokenizer::load(text_fixture("t5_tokenizer"));
  EXPECT_THROW(tok.encode("x", 0), std::runtime_error);
  EXPECT_THROW(tok.encode(std::string("\xFF\xFE"), 8), std::runtime_error);
  EXPECT_THROW(tok.decode({100000}), std::runtime_error);
  spdit::test::TempDir dir;
  try {
    text::T5Tokenizer::load(dir.path);
    FAIL() << "loaded an empty folder";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("spiece.model"), std::string::npos) << e.what();
  }
  spdit::test::write_file(dir.path + "/spiece.model", "not a model");
  try {
    text::T5Tokenizer::load(dir.path);
    FAIL() << "loaded a file that is no model";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("not a SentencePiece model"), std::string::npos)
        << e.what();
  }
}
