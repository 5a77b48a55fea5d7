#include <sentencepiece_trainer.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "spdit/text/vocab_writers.h"
#include "text_files.h"

namespace spdit::text {
namespace {

// The corpus' lines, fed to the trainer without a temporary file.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) lines_.push_back(line);
    }
  }
  bool done() const override { return at_ >= lines_.size(); }
  void Next() override { ++at_; }
  const std::string& value() const override { return lines_[at_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::vector<std::string> lines_;
  size_t at_ = 0;
};

}  // namespace

void write_t5_tokenizer_files(const std::string& folder, int vocab_size, const std::string& corpus) {
  make_folder(folder);
  // T5's special ids and normalization; one thread so that the same corpus
  // always gives the same model.
  const std::unordered_map<std::string, std::string> args = {
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
  LineIterator lines(corpus);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
  if (!status.ok()) {
    throw std::runtime_error("spdit: SentencePiece could not train a " + std::to_string(vocab_size) +
                             "-piece model for " + folder + ": " + status.ToString());
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
