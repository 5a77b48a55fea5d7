#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "sentencepiece_backend.h"
#include "spdit/text/vocab_writers.h"
#include "text_files.h"

namespace spdit::text {

void write_t5_tokenizer_files(const std::string& folder, int vocab_size,
                              const std::string& corpus) {
  make_folder(folder);
  // T5's special ids and normalization; one thread so that the same corpus
  // always gives the same model.
  const std::vector<std::pair<std::string, std::string>> args = {
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(vocab_size)},
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"unk_id", "2"},
      {"bos_id", "-1"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "nmt_nfkc"},
      {"num_threads", "1"},
      {"seed_sentencepiece_size", "100000"},
      {"minloglevel", "2"},
  };
  std::vector<std::string> lines;
  std::istringstream in(corpus);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  std::string model;
  const auto error = make_sentencepiece_backend()->train(args, lines, &model);
  if (!error.empty()) {
    throw std::runtime_error("spdit: SentencePiece could not train a " +
                             std::to_string(vocab_size) + "-piece model for " + folder + ": " +
                             error);
  }
  write_text_file(folder + "/spiece.model", model);
  nlohmann::ordered_json special;
  special["eos_token"] = "</s>";
  special["unk_token"] = "<unk>";
  special["pad_token"] = "<pad>";
  write_text_file(folder + "/special_tokens_map.json", special.dump(2) + "\n");
  nlohmann::ordered_json config = special;
  config["tokenizer_class"] = "T5Tokenizer";
  config["model_max_length"] = 512;
  config["extra_ids"] = 0;  // a small vocabulary: no <extra_id_N> sentinels (T5 has 100)
  write_text_file(folder + "/tokenizer_config.json", config.dump(2) + "\n");
}

}  // namespace spdit::text
