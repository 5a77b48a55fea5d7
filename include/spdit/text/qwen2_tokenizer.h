#pragma once
/// Qwen2's byte-level BPE tokenizer (Qwen2.5-VL's; Qwen-Image's `tokenizer/`),
/// as transformers' Qwen2Tokenizer / Qwen2TokenizerFast read a folder:
/// `tokenizer.json` (model.vocab, model.merges, added_tokens) or
/// `vocab.json` + `merges.txt` + `tokenizer_config.json` (added_tokens_decoder).
/// The added tokens (<|im_start|>, <|im_end|>, <|endoftext|>, ...) written in
/// the text are split off whole first; the rest is NFC-normalised, split by
/// Qwen2's pre-tokenizer regex, and each piece's bytes merged by BPE (no
/// end-of-word suffix, no unknown token: every byte has one). No bos/eos is
/// added around the text, as Qwen2's tokenizer adds none.
///
///   auto tok = spdit::text::Qwen2Tokenizer::load("Qwen-Image/tokenizer");
///   std::vector<int64_t> ids = tok.encode("<|im_start|>user\na red fox<|im_end|>");
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace spdit::text {

/// A token the tokenizer matches in the text before BPE.
struct Qwen2AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = true;
};

class Qwen2Tokenizer {
 public:
  /// `folder` with tokenizer.json (preferred), or with vocab.json and
  /// merges.txt (the added tokens then from tokenizer_config.json's
  /// added_tokens_decoder and added_tokens.json). The pad token is
  /// tokenizer_config.json's pad_token where the folder has one, else
  /// <|endoftext|> (Qwen2Tokenizer's default). Throws naming the file that is
  /// missing or malformed.
  static Qwen2Tokenizer load(const std::string& folder);
  /// Reads one tokenizer.json (a BPE model; other model types are refused).
  static Qwen2Tokenizer from_tokenizer_json(const std::string& file);
  /// Reads vocab.json + merges.txt (first line "#version: ..." skipped) and,
  /// when not empty, the added tokens of `tokenizer_config_json`.
  static Qwen2Tokenizer from_vocab_and_merges(const std::string& vocab_json,
                                              const std::string& merges_txt,
                                              const std::string& tokenizer_config_json = "");

  /// The tokens of `text` (byte symbols, as the vocabulary spells them; added tokens whole).
  std::vector<std::string> tokenize(const std::string& text) const;
  /// Their ids.
  std::vector<int64_t> encode(const std::string& text) const;
  /// The text of `ids` (bytes back, ill-formed UTF-8 replaced by U+FFFD; added tokens kept).
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t token_id(const std::string& token) const;  // throws when absent
  int64_t pad_token_id() const { return token_id(pad_token_); }
  const std::string& pad_token() const { return pad_token_; }
  void set_pad_token(const std::string& token);
  /// Vocabulary and added tokens together (the embedding table needs at least as many rows).
  int64_t size() const;
  const std::vector<Qwen2AddedToken>& added_tokens() const { return added_; }

 private:
  Qwen2Tokenizer() = default;
  void add_merge(const std::string& first, const std::string& second, const std::string& where);
  void finish(const std::string& where);
  std::vector<std::string> bpe(const std::string& piece) const;

  std::unordered_map<std::string, int64_t> vocab_;  // BPE vocabulary and added tokens
  std::unordered_map<int64_t, std::string> inverse_;
  std::unordered_map<std::string, int64_t> ranks_;  // "first second" -> rank
  std::vector<Qwen2AddedToken> added_;
  bool ignore_merges_ = false;  // tokenizers' BPE option: a piece in the vocabulary is one token
  std::string pad_token_ = "<|endoftext|>";
};

}  // namespace spdit::text
