// Qwen2's byte-level BPE tokenizer against transformers' Qwen2Tokenizer as
// re-stated by scripts/reference/qwen2_text_reference.py, on a small
// vocabulary learned there (laid out as Qwen's: byte symbols, merges, added
// tokens after them) and texts with accents (composed and decomposed: NFC),
// CJK, emoji with a ZWJ, digits (one token each), whitespace runs and
// newlines, contractions in both cases, added tokens written in the text.
#include <gtest/gtest.h>

#include "spdit/text/qwen2_tokenizer.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/text_fixtures.h"

using spdit::test::error_of;
using spdit::test::read_json;
using spdit::test::write_file;
using spdit::text::Qwen2Tokenizer;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SPDIT_FIXTURES) + "/qwen2/" + name;
}

void expect_cases(const Qwen2Tokenizer& tok, const std::string& how) {
  const auto cases = read_json(fixture("tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tok.tokenize(text), c["tokens"].get<std::vector<std::string>>())
        << how << ": '" << text << "'";
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int64_t>>()) << how << ": '" << text << "'";
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << how << ": '" << text << "'";
  }
}

}  // namespace

TEST(Qwen2Tokenizer, tokenizer_json_gives_the_reference_ids) {
  expect_cases(Qwen2Tokenizer::load(fixture("tokenizer")), "tokenizer.json");
}

TEST(Qwen2Tokenizer, vocab_json_and_merges_txt_give_the_same_ids) {
  // The folder without tokenizer.json: the slow tokenizer's files.
  spdit::test::TempDir dir;
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
    std::system(("cp " + fixture("tokenizer/") + f + " " + dir.path).c_str());
  expect_cases(Qwen2Tokenizer::load(dir.path), "vocab.json + merges.txt");
}

TEST(Qwen2Tokenizer, merges_written_as_pairs_read_as_the_strings_do) {
  // tokenizers >= 0.20 writes each merge as ["a", "b"].
  auto j = read_json(fixture("tokenizer/tokenizer.json"));
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    const auto s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  spdit::test::TempDir dir;
  write_file(dir.path + "/tokenizer.json", j.dump());
  expect_cases(Qwen2Tokenizer::load(dir.path), "merges as pairs");
}

TEST(Qwen2Tokenizer, added_tokens_are_whole_and_the_pad_token_is_endoftext) {
  const auto tok = Qwen2Tokenizer::load(fixture("tokenizer"));
  const auto ids = tok.encode("<|im_start|>user\n<|im_end|>");
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.front(), tok.token_id("<|im_start|>"));
  EXPECT_EQ(ids.back(), tok.token_id("<|im_end|>"));
  EXPECT_EQ(tok.pad_token(), "<|endoftext|>");
  EXPECT_EQ(tok.pad_token_id(), tok.token_id("<|endoftext|>"));
  // The added tokens follow the BPE vocabulary, as in Qwen's (151643 = <|endoftext|>).
  EXPECT_EQ(tok.size(), tok.added_tokens().back().id + 1);
}

TEST(Qwen2Tokenizer, mistakes_are_named) {
  spdit::test::TempDir dir;
  EXPECT_NE(error_of([&] { Qwen2Tokenizer::load(dir.path); }).find("tokenizer.json, or vocab.json"),
            std::string::npos);
  // A unigram tokenizer.json (T5's, say) is not Qwen2's.
  write_file(dir.path + "/tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
  EXPECT_NE(error_of([&] { Qwen2Tokenizer::load(dir.path); }).find("'Unigram'"), std::string::npos);
  // A vocabulary without the byte symbols cannot spell every text.
  write_file(dir.path + "/tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})");
  EXPECT_NE(error_of([&] { Qwen2Tokenizer::load(dir.path); }).find("byte symbol"),
            std::string::npos);
  write_file(dir.path + "/tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}})");
  EXPECT_NE(error_of([&] { Qwen2Tokenizer::load(dir.path); }).find("'a b c' is not two tokens"),
            std::string::npos);
  const auto tok = Qwen2Tokenizer::load(fixture("tokenizer"));
  EXPECT_NE(error_of([&] { tok.encode("bad \xff byte"); }).find("UTF-8"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.decode({tok.size() + 5}); }).find("not in the Qwen2 vocabulary"),
            std::string::npos);
}
