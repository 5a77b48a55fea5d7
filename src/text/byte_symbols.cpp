#include "byte_symbols.h"

namespace spdit::text {
namespace {

std::string utf8_of(unsigned cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {  // every symbol is below U+0800
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

bool printable(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

}  // namespace

const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    unsigned moved = 0;
    for (unsigned b = 0; b < 256; ++b) t[b] = utf8_of(printable(b) ? b : 256 + moved++);
    return t;
  }();
  return table;
}

const std::unordered_map<std::string, unsigned char>& symbol_bytes() {
  static const std::unordered_map<std::string, unsigned char> inverse = [] {
    std::unordered_map<std::string, unsigned char> m;
    for (unsigned b = 0; b < 256; ++b) m[byte_symbols()[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  return inverse;
}

std::vector<BpePair> learn_bpe_merges(std::map<BpeWord, int64_t> words, int rounds) {
  std::vector<BpePair> merges;
  for (int r = 0; r < rounds; ++r) {
    std::map<BpePair, int64_t> pairs;  // ordered: ties go to the smallest pair
    for (const auto& [w, n] : words) {
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += n;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const BpePair m = best->first;
    merges.push_back(m);
    std::map<BpeWord, int64_t> merged;
    for (const auto& [w, n] : words) {
      BpeWord out;
      for (size_t i = 0; i < w.size();) {
        if (i + 1 < w.size() && w[i] == m.first && w[i + 1] == m.second) {
          out.push_back(m.first + m.second);
          i += 2;
        } else {
          out.push_back(w[i++]);
        }
      }
      merged[out] += n;
    }
    words.swap(merged);
  }
  return merges;
}

}  // namespace spdit::text
