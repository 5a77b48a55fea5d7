#pragma once
// Qwen2's pre-tokenizer: the pieces of `text` (already NFC) that BPE merges
// separately. Shared by the tokenizer and the vocabulary writer.
#include <string>
#include <vector>

namespace spdit::text {

std::vector<std::string> qwen2_pre_tokenize(const std::string& text);

}  // namespace spdit::text
