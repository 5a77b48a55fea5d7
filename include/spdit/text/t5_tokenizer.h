#pragma once
/// T5's SentencePiece tokenizer (`spiece.model`, read by Debian's
/// libsentencepiece) as Flux's pipeline calls it: the prompt's pieces, then
/// </s> (id 1), padded with <pad> (id 0) to max_length (512 for FLUX.1-dev,
/// 256 for schnell); a longer prompt is cut to fit, with a warning.
///
///   auto tok = spdit::text::T5Tokenizer::load("FLUX.1-dev/tokenizer_2");
///   auto enc = tok.encode("a red fox in the snow", 512);
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "spdit/text/tokenized_prompt.h"

namespace spdit::text {

class T5Tokenizer {
 public:
  /// Reads `path`: a spiece.model file, or a folder holding one. Throws
  /// naming the file when it is missing or not a SentencePiece model.
  static T5Tokenizer load(const std::string& path);

  /// The pieces' ids, without </s>.
  std::vector<int64_t> token_ids(const std::string& text) const;
  /// ids + </s>, padded with <pad> to `max_length`; a longer prompt keeps its
  /// first max_length - 1 ids and, when `warn`, prints the cut text to stderr.
  TokenizedPrompt encode(const std::string& text, int64_t max_length, bool warn = true) const;
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t vocab_size() const;  // the model's pieces (T5's config adds 100 extra ids on top)

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  int64_t eos_id_ = 1, pad_id_ = 0;
};

}  // namespace spdit::text
