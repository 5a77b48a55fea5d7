#include "spdit/text/t5_tokenizer.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "pcre2_regex.h"
#include "sentencepiece_backend.h"
#include "text_files.h"

namespace spdit::text {

struct T5Tokenizer::Impl {
  std::unique_ptr<SentencePieceBackend> sp = make_sentencepiece_backend();
  std::string path;
};

T5Tokenizer T5Tokenizer::load(const std::string& path) {
  const std::string file = file_exists(path) ? path : path + "/spiece.model";
  require_file(file,
               "; a T5 tokenizer folder (tokenizer_2/ of a Flux download) holds spiece.model");
  T5Tokenizer t;
  t.impl_ = std::make_shared<Impl>();
  t.impl_->path = file;
  const auto error = t.impl_->sp->load(file);
  if (!error.empty())
    throw std::runtime_error("spdit: " + file + " is not a SentencePiece model: " + error);
  // T5's ids come from the model: </s> ends every prompt, <pad> fills the rest.
  t.eos_id_ = t.impl_->sp->eos_id();
  t.pad_id_ = t.impl_->sp->pad_id();
  if (t.eos_id_ < 0 || t.pad_id_ < 0) {
    throw std::runtime_error("spdit: " + file + " defines no " +
                             (t.eos_id_ < 0 ? "</s>" : "<pad>") +
                             " piece; a T5 spiece.model has <pad> 0, </s> 1, <unk> 2");
  }
  return t;
}

int64_t T5Tokenizer::vocab_size() const { return impl_->sp->piece_size(); }

std::vector<int64_t> T5Tokenizer::token_ids(const std::string& text) const {
  require_utf8(text, "the prompt");
  std::vector<int> ids;
  const auto error = impl_->sp->encode(text, &ids);
  if (!error.empty())
    throw std::runtime_error("spdit: SentencePiece (" + impl_->path + "): " + error);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TokenizedPrompt T5Tokenizer::encode(const std::string& text, int64_t max_length, bool warn) const {
  if (max_length < 1) {
    throw std::runtime_error(
        "spdit: T5 max_length " + std::to_string(max_length) +
        " leaves no room for </s>; use at least 1 (Flux: 512 for dev, 256 for schnell)");
  }
  const auto body = token_ids(text);
  const size_t room = static_cast<size_t>(max_length - 1);
  TokenizedPrompt out;
  out.ids.assign(body.begin(), body.begin() + std::min(room, body.size()));
  out.ids.push_back(eos_id_);
  out.ids.resize(static_cast<size_t>(max_length), pad_id_);
  if (body.size() > room) {
    out.truncated = decode(std::vector<int64_t>(body.begin() + room, body.end()));
    if (warn) {
      std::cerr << "spdit: warning: the following part of your input was truncated because "
                   "`max_sequence_length` is set to "
                << max_length << " tokens: " << out.truncated << std::endl;
    }
  }
  return out;
}

std::string T5Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> v;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      throw std::runtime_error("spdit: id " + std::to_string(id) + " is not in " + impl_->path +
                               " (" + std::to_string(vocab_size()) + " pieces)");
    }
    v.push_back(static_cast<int>(id));
  }
  std::string text;
  const auto error = impl_->sp->decode(v, &text);
  if (!error.empty())
    throw std::runtime_error("spdit: SentencePiece (" + impl_->path + "): " + error);
  return text;
}

}  // namespace spdit::text
