#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "byte_symbols.h"
#include "clip_text_normalize.h"
#include "spdit/text/vocab_writers.h"
#include "text_files.h"

namespace spdit::text {
namespace {

using Word = BpeWord;
using Pair = BpePair;

// Each word of the corpus as CLIP's tokenizer sees it before BPE: its bytes'
// symbols, </w> on the last; with how often it occurs.
std::map<Word, int64_t> corpus_words(const std::string& corpus) {
  std::map<Word, int64_t> words;
  std::istringstream lines(corpus);
  std::string line;
  while (std::getline(lines, line)) {
    for (const auto& piece : clip_pre_tokenize(line)) {
      Word w;
      for (unsigned char b : piece) w.push_back(byte_symbols()[b]);
      w.back() += "</w>";
      ++words[w];
    }
  }
  return words;
}

}  // namespace

int64_t write_clip_tokenizer_files(const std::string& folder, int merges,
                                   const std::string& corpus) {
  if (merges < 0)
    throw std::runtime_error("spdit: a CLIP vocabulary needs merges >= 0, not " +
                             std::to_string(merges));
  make_folder(folder);
  const auto learned = learn_bpe_merges(corpus_words(corpus), merges);
  // OpenAI's CLIP lays its vocabulary out in this order; a token a merge
  // rebuilds keeps its first id.
  std::vector<std::string> tokens;
  for (const auto& s : byte_symbols()) tokens.push_back(s);
  for (const auto& s : byte_symbols()) tokens.push_back(s + "</w>");
  for (const auto& [a, b] : learned) tokens.push_back(a + b);
  tokens.push_back("<|startoftext|>");
  tokens.push_back("<|endoftext|>");
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (const auto& t : tokens) {
    if (!vocab.contains(t)) vocab[t] = static_cast<int64_t>(vocab.size());
  }
  write_text_file(folder + "/vocab.json", vocab.dump(1) + "\n");
  std::string m = "#version: 0.2\n";
  for (const auto& [a, b] : learned) m += a + " " + b + "\n";
  write_text_file(folder + "/merges.txt", m);
  nlohmann::ordered_json special;
  special["bos_token"] = "<|startoftext|>";
  special["eos_token"] = "<|endoftext|>";
  special["unk_token"] = "<|endoftext|>";
  special["pad_token"] = "<|endoftext|>";
  write_text_file(folder + "/special_tokens_map.json", special.dump(2) + "\n");
  nlohmann::ordered_json config = special;
  config["tokenizer_class"] = "CLIPTokenizer";
  config["model_max_length"] = 77;
  config["do_lower_case"] = true;
  write_text_file(folder + "/tokenizer_config.json", config.dump(2) + "\n");
  return static_cast<int64_t>(vocab.size());
}

}  // namespace spdit::text
