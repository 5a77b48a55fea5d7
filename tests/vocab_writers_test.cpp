// The tokenizer files spdit writes for a random-weight model folder: real
// vocabularies that the readers load. The CLIP files must be exactly those
// the reference script learned from the same corpus (so the learner is
// checked merge by merge), and the spiece.model SentencePiece's C++ trainer
// writes must tokenize as the one its Python binding trained.
#include "spdit/text/vocab_writers.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "spdit/text/clip_tokenizer.h"
#include "spdit/text/t5_tokenizer.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using namespace spdit;
using spdit::test::read_json;
using spdit::test::text_fixture;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST(VocabWriters, the_builtin_corpus_is_the_reference_scripts) {
  EXPECT_EQ(text::builtin_text_corpus(),
            read_all(std::string(SPDIT_FIXTURES) + "/../../scripts/reference/text_corpus.txt"));
}

TEST(VocabWriters, clip_files_are_the_reference_vocabulary_and_load) {
  spdit::test::TempDir dir;
  const int64_t size = text::write_clip_tokenizer_files(dir.path + "/tokenizer");
  const auto want = read_json(text_fixture("clip_tokenizer/vocab.json"));
  EXPECT_EQ(size, static_cast<int64_t>(want.size()));
  EXPECT_EQ(read_json(dir.path + "/tokenizer/vocab.json"), want);
  EXPECT_EQ(read_all(dir.path + "/tokenizer/merges.txt"),
            read_all(text_fixture("clip_tokenizer/merges.txt")));

  const auto tok = text::ClipTokenizer::load(dir.path + "/tokenizer");
  EXPECT_EQ(tok.config().pad_token, "<|endoftext|>");
  EXPECT_EQ(tok.config().model_max_length, 77);
  // <|endoftext|> has the highest id, as the legacy pooling (eos_token_id 2) needs.
  EXPECT_EQ(tok.token_id("<|endoftext|>"), size - 1);
  for (const auto& c : read_json(text_fixture("clip_tokenizer_cases.json"))) {
    if (c.contains("pad_token")) continue;
    EXPECT_EQ(tok.encode(c["prompt"].get<std::string>(), 77, false).ids,
              c["ids"].get<std::vector<int64_t>>());
  }
  // Words of the corpus become few tokens: the merges were learned, not just written.
  EXPECT_EQ(tok.tokenize("the fox"), (std::vector<std::string>{"the</w>", "fox</w>"}));
}

TEST(VocabWriters, spiece_model_is_trained_by_sentencepiece_and_tokenizes_as_the_reference) {
  spdit::test::TempDir dir;
  text::write_t5_tokenizer_files(dir.path + "/tokenizer_2");
  const auto tok = text::T5Tokenizer::load(dir.path + "/tokenizer_2");
  EXPECT_EQ(tok.vocab_size(), 128);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  for (const auto& c : read_json(text_fixture("t5_tokenizer_cases.json"))) {
    EXPECT_EQ(tok.encode(c["prompt"].get<std::string>(), c["max_length"].get<int64_t>(), false).ids,
              c["ids"].get<std::vector<int64_t>>())
        << c["prompt"];
  }
  const std::string line = "a photo of a red fox in the snow, sitting on a rock at sunrise.";
  EXPECT_EQ(tok.decode(tok.token_ids(line)), line);
  EXPECT_LT(tok.token_ids(line).size(), line.size() * 2 / 3);  // pieces longer than characters
  const auto config = read_json(dir.path + "/tokenizer_2/tokenizer_config.json");
  EXPECT_EQ(config["eos_token"], "</s>");
}

TEST(VocabWriters, refuse_what_they_cannot_write) {
  spdit::test::TempDir dir;
  EXPECT_THROW(text::write_clip_tokenizer_files(dir.path + "/a", -1), std::runtime_error);
  // More pieces than a two-line corpus can give.
  EXPECT_THROW(text::write_t5_tokenizer_files(dir.path + "/b", 5000, "one line\nanother line\n"),
               std::runtime_error);
}
