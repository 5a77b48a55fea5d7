#pragma once
// GPT-2 / CLIP's reversible map from the 256 byte values to printable
// characters (printable Latin-1 stays itself, every other byte moves to
// U+0100 + n in byte order), so that BPE never sees spaces or controls.
#include <array>
#include <string>
#include <unordered_map>

namespace spdit::text {

/// The UTF-8 text of each byte's symbol.
const std::array<std::string, 256>& byte_symbols();
/// Symbol (UTF-8) -> byte.
const std::unordered_map<std::string, unsigned char>& symbol_bytes();

}  // namespace spdit::text
