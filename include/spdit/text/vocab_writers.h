#pragma once
/// Small but real tokenizer files, for a random-weight model folder that the
/// whole pipeline can run (`spdit new-model`): built with the same libraries
/// that read them, from a corpus built into spdit.
///
///   write_clip_tokenizer_files("tiny/tokenizer");       // vocab.json, merges.txt, configs
///   write_t5_tokenizer_files("tiny/tokenizer_2");       // spiece.model, configs
#include <string>

namespace spdit::text {

/// The built-in English corpus (scripts/reference/text_corpus.txt holds the same text).
const std::string& builtin_text_corpus();

/// CLIP's tokenizer/ folder: vocab.json laid out as OpenAI's CLIP builds its
/// vocabulary (the 256 byte symbols, the same with </w>, one token per merge,
/// <|startoftext|>, <|endoftext|> last: the highest id, as the legacy pooling
/// needs), merges.txt learned from `corpus` by `merges` rounds of "merge the
/// most frequent adjacent pair" (ties to the smallest pair), and
/// tokenizer_config.json / special_tokens_map.json (pad <|endoftext|>, 77
/// tokens, as Flux's). Creates the folder; returns the vocabulary's size.
int64_t write_clip_tokenizer_files(const std::string& folder, int merges = 200,
                                   const std::string& corpus = builtin_text_corpus());

/// T5's tokenizer_2/ folder: a unigram spiece.model of `vocab_size` pieces
/// trained by SentencePiece's own trainer on `corpus`, with T5's ids (<pad>
/// 0, </s> 1, <unk> 2, no <s>) and normalization (nmt_nfkc), and
/// tokenizer_config.json / special_tokens_map.json. Creates the folder.
void write_t5_tokenizer_files(const std::string& folder, int vocab_size = 128,
                              const std::string& corpus = builtin_text_corpus());

/// Qwen2's tokenizer/ folder: tokenizer.json (a byte-level BPE: the 256 byte
/// symbols, one token per merge learned from `corpus` by `merges` rounds as
/// above but over Qwen2's pre-tokenized pieces, no end-of-word suffix; then
/// Qwen2.5-VL's added tokens <|endoftext|>, <|im_start|>, <|im_end|>, ...)
/// and tokenizer_config.json (pad <|endoftext|>). Creates the folder; returns
/// the number of ids (vocabulary and added tokens).
int64_t write_qwen2_tokenizer_files(const std::string& folder, int merges = 200,
                                    const std::string& corpus = builtin_text_corpus());

}  // namespace spdit::text
