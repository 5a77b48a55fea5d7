#pragma once
// GPT-2 / CLIP's reversible map from the 256 byte values to printable
// characters (printable Latin-1 stays itself, every other byte moves to
// U+0100 + n in byte order), so that BPE never sees spaces or controls.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace spdit::text {

/// The UTF-8 text of each byte's symbol.
const std::array<std::string, 256>& byte_symbols();
/// Symbol (UTF-8) -> byte.
const std::unordered_map<std::string, unsigned char>& symbol_bytes();

/// A word as BPE sees it: its symbols, merged ones joined.
using BpeWord = std::vector<std::string>;
using BpePair = std::pair<std::string, std::string>;

/// Learns up to `rounds` merges from `words` (each with how often it occurs)
/// as the vocabulary writers need them: each round merges the most frequent
/// adjacent pair everywhere, ties going to the smallest pair, so that a
/// corpus always gives the same vocabulary.
std::vector<BpePair> learn_bpe_merges(std::map<BpeWord, int64_t> words, int rounds);

}  // namespace spdit::text
