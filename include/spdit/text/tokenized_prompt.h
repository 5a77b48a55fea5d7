#pragma once
/// What a tokenizer gives the text encoder for one prompt.
#include <cstdint>
#include <string>
#include <vector>

namespace spdit::text {

struct TokenizedPrompt {
  std::vector<int64_t> ids;  // max_length ids, padded
  std::string truncated;     // the text that did not fit ("" when all did)
};

}  // namespace spdit::text
