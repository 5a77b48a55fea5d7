#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "byte_symbols.h"
#include "clip_text_normalize.h"
#include "qwen2_pre_tokenizer.h"
#include "spdit/text/vocab_writers.h"
#include "text_files.h"

namespace spdit::text {
namespace {

using Word = BpeWord;
using Pair = BpePair;

// Qwen2.5-VL's added tokens, in its order (ids after the BPE vocabulary).
const std::vector<std::string> kAddedTokens = {
    "<|endoftext|>",      "<|im_start|>",     "<|im_end|>",     "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>",    "<|box_end|>",    "<|quad_start|>",
    "<|quad_end|>",       "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>",      "<|video_pad|>"};

std::vector<Pair> learn_merges(const std::string& corpus, int rounds) {
  std::map<Word, int64_t> words;
  std::istringstream lines(corpus);
  std::string line;
  while (std::getline(lines, line)) {
    for (const auto& piece : qwen2_pre_tokenize(unicode_nfc(line))) {
      Word w;
      for (unsigned char b : piece) w.push_back(byte_symbols()[b]);
      ++words[w];
    }
  }
  return learn_bpe_merges(std::move(words), rounds);
}

}  // namespace

int64_t write_qwen2_tokenizer_files(const std::string& folder, int merges,
                                    const std::string& corpus) {
  if (merges < 0)
    throw std::runtime_error("spdit: a Qwen2 vocabulary needs merges >= 0, not " +
                             std::to_string(merges));
  make_folder(folder);
  const auto learned = learn_merges(corpus, merges);
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (const auto& s : byte_symbols()) vocab[s] = static_cast<int64_t>(vocab.size());
  for (const auto& [a, b] : learned) {
    if (!vocab.contains(a + b)) vocab[a + b] = static_cast<int64_t>(vocab.size());
  }
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  int64_t next = static_cast<int64_t>(vocab.size());
  for (const auto& t : kAddedTokens) {
    added.push_back({{"id", next++},
                     {"content", t},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [a, b] : learned) merge_list.push_back(a + " " + b);
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "NFC"}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  write_text_file(folder + "/tokenizer.json", j.dump(1) + "\n");
  nlohmann::ordered_json config;
  config["tokenizer_class"] = "Qwen2Tokenizer";
  config["pad_token"] = "<|endoftext|>";
  config["eos_token"] = "<|im_end|>";
  config["model_max_length"] = 131072;
  write_text_file(folder + "/tokenizer_config.json", config.dump(2) + "\n");
  return next;
}

}  // namespace spdit::text
