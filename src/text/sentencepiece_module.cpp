// libspdit_sentencepiece.so: the only code that calls libsentencepiece (see
// sentencepiece_backend.h for why it is a module of its own).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

#include "sentencepiece_backend.h"

namespace spdit::text {
namespace {

class Lines : public sentencepiece::SentenceIterator {
 public:
  explicit Lines(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return at_ >= lines_.size(); }
  void Next() override { ++at_; }
  const std::string& value() const override { return lines_[at_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t at_ = 0;
};

class Backend : public SentencePieceBackend {
 public:
  std::string load(const std::string& path) override { return message(sp_.Load(path)); }
  std::string encode(const std::string& text, std::vector<int>* ids) const override {
    return message(sp_.Encode(text, ids));
  }
  std::string decode(const std::vector<int>& ids, std::string* text) const override {
    return message(sp_.Decode(ids, text));
  }
  int eos_id() const override { return sp_.eos_id(); }
  int pad_id() const override { return sp_.pad_id(); }
  int piece_size() const override { return sp_.GetPieceSize(); }
  std::string train(const std::vector<std::pair<std::string, std::string>>& args,
                    const std::vector<std::string>& lines, std::string* model) const override {
    const std::unordered_map<std::string, std::string> kwargs(args.begin(), args.end());
    Lines it(lines);
    return message(sentencepiece::SentencePieceTrainer::Train(kwargs, &it, model));
  }

 private:
  static std::string message(const sentencepiece::util::Status& s) {
    return s.ok() ? "" : s.ToString();
  }
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace
}  // namespace spdit::text

extern "C" spdit::text::SentencePieceBackend* spdit_sentencepiece_backend_new() {
  return new spdit::text::Backend();
}
