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

}  // namespace spdit::text
