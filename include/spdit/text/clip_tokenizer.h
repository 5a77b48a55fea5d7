#pragma once
/// CLIP's byte-level BPE tokenizer, as transformers' CLIPTokenizer reads a
/// `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json,
/// special_tokens_map.json) and as Flux's pipeline calls it: <|startoftext|>,
/// the prompt's tokens, <|endoftext|>, padded to 77 with the configured pad
/// token; a longer prompt is cut to fit, with a warning naming what was cut.
///
///   auto tok = spdit::text::ClipTokenizer::load("FLUX.1-dev/tokenizer");
///   auto enc = tok.encode("a red fox in the snow");   // enc.ids: 77 ids
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "spdit/text/tokenized_prompt.h"

namespace spdit::text {

/// Special tokens and length, as tokenizer_config.json names them.
struct ClipTokenizerConfig {
  std::string bos_token = "<|startoftext|>";
  std::string eos_token = "<|endoftext|>";
  std::string unk_token = "<|endoftext|>";
  std::string pad_token = "<|endoftext|>";
  int64_t model_max_length = 77;
};

class ClipTokenizer {
 public:
  /// Reads vocab.json and merges.txt of `folder`, and the special tokens of
  /// its tokenizer_config.json / special_tokens_map.json where present.
  /// Throws naming the file that is missing or malformed.
  static ClipTokenizer load(const std::string& folder);
  ClipTokenizer(const std::string& vocab_json, const std::string& merges_txt,
                ClipTokenizerConfig config = {});

  /// The BPE tokens of `text`, without <|startoftext|> / <|endoftext|> around
  /// it (special tokens written in the text are kept whole).
  std::vector<std::string> tokenize(const std::string& text) const;
  /// Their ids (a token the vocabulary lacks becomes the unk token's id).
  std::vector<int64_t> token_ids(const std::string& text) const;
  /// bos + ids + eos, padded with the pad token to `max_length` (<= 0: the
  /// config's model_max_length); longer prompts are cut and, when `warn`,
  /// the cut text is printed to stderr as diffusers' Flux pipeline logs it.
  TokenizedPrompt encode(const std::string& text, int64_t max_length = 0, bool warn = true) const;
  /// The text of `ids` (convert_tokens_to_string: bytes back, </w> -> space).
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t token_id(const std::string& token) const;  // throws when absent
  const ClipTokenizerConfig& config() const { return config_; }
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }

 private:
  std::vector<std::string> bpe(const std::string& piece) const;

  ClipTokenizerConfig config_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> inverse_;
  std::unordered_map<std::string, int64_t> ranks_;  // "first second" -> rank
};

}  // namespace spdit::text
