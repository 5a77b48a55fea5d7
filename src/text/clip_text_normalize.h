#pragma once
// The text side of CLIPTokenizer before BPE, as transformers runs it without
// ftfy (its default install): BasicTokenizer(strip_accents=False,
// do_split_on_punc=False) -- drop NUL, U+FFFD and control characters, map
// whitespace to spaces, put spaces around CJK ideographs, NFC, split on
// whitespace, lower-case each word -- then the pre-tokenizer regex.
// PCRE2 gives the Unicode classes; ICU the NFC and the lower-casing (full
// case mapping, as Python's str.lower: "İ" -> "i̇", final sigma -> "ς").
#include <string>
#include <vector>

namespace spdit::text {

/// BasicTokenizer's output words joined by single spaces.
std::string clip_basic_clean(const std::string& text);

/// The words and symbols CLIP's regex finds in clip_basic_clean(text):
/// "<|startoftext|>", "'s", letters, one digit, runs of other symbols.
std::vector<std::string> clip_pre_tokenize(const std::string& text);

}  // namespace spdit::text

namespace spdit::text {

/// `bytes` as UTF-8 with each ill-formed sequence replaced by U+FFFD, as
/// Python's bytes.decode("utf-8", errors="replace") does.
std::string utf8_with_replacement(const std::string& bytes);

/// Unicode NFC of UTF-8 `text` (ICU), as Python's unicodedata.normalize("NFC").
std::string unicode_nfc(const std::string& text);

}  // namespace spdit::text
