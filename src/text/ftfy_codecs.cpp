#include "ftfy_codecs.h"

#include <stdexcept>

namespace spdit::text::ftfy_codec {
namespace {

bool in(unsigned char b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; }

// The length of the well-formed UTF-8 sequence at bytes[i], or 0 where it is
// ill-formed; then *bad is the length of its maximal ill-formed subpart (the
// bytes Python's decoder reports as one error). The ranges are Unicode's
// table 3-7, which Python's decoder follows.
size_t sequence_at(const std::string& bytes, size_t i, size_t* bad) {
  const auto b0 = static_cast<unsigned char>(bytes[i]);
  if (b0 < 0x80) return 1;
  size_t need = 0;
  unsigned lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (in(b0, 0xC2, 0xDF)) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;
  } else if (in(b0, 0xE1, 0xEC) || in(b0, 0xEE, 0xEF)) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;
  } else if (in(b0, 0xF1, 0xF3)) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    const bool ok =
        i + k < bytes.size() && (k == 1 ? in(static_cast<unsigned char>(bytes[i + k]), lo, hi)
                                        : in(static_cast<unsigned char>(bytes[i + k]), 0x80, 0xBF));
    if (!ok) {
      *bad = k;
      return 0;
    }
  }
  return need + 1;
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::u32string to_code_points(const std::string& utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size();) {
    const auto b0 = static_cast<unsigned char>(utf8[i]);
    const size_t n = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    char32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t k = 1; k < n && i + k < utf8.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3F);
    out += cp;
    i += n;
  }
  return out;
}

std::string to_utf8(const std::u32string& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t cp : code_points) append_utf8(out, cp);
  return out;
}

std::optional<std::string> decode_utf8(const std::string& bytes) {
  size_t bad = 0;
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = sequence_at(bytes, i, &bad);
    if (n == 0) return std::nullopt;
    i += n;
  }
  return bytes;
}

std::string decode_utf8_replace(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    size_t bad = 0;
    const size_t n = sequence_at(bytes, i, &bad);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      i += bad;
    } else {
      out.append(bytes, i, n);
      i += n;
    }
  }
  return out;
}

std::optional<std::string> decode_utf8_variants(const std::string& bytes) {
  // utf8_variants.IncrementalDecoder, strict and final: plain UTF-8, except
  // that C0 80 is U+0000 and a CESU-8 surrogate pair (ED A0-AF 80-BF ED B0-BF
  // 80-BF) is the character it encodes; any other encoded surrogate fails.
  std::string out;
  out.reserve(bytes.size());
  auto at = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (size_t i = 0; i < bytes.size();) {
    if (at(i) == 0xC0 && i + 1 < bytes.size() && at(i + 1) == 0x80) {
      out += '\0';
      i += 2;
      continue;
    }
    if (at(i) == 0xED && i + 5 < bytes.size() && in(at(i + 1), 0xA0, 0xAF) &&
        in(at(i + 2), 0x80, 0xBF) && at(i + 3) == 0xED && in(at(i + 4), 0xB0, 0xBF) &&
        in(at(i + 5), 0x80, 0xBF)) {
      const char32_t cp = ((at(i + 1) & 0x0F) << 16) + ((at(i + 2) & 0x3F) << 10) +
                          ((at(i + 4) & 0x0F) << 6) + (at(i + 5) & 0x3F) + 0x10000;
      append_utf8(out, cp);
      i += 6;
      continue;
    }
    size_t bad = 0;
    const size_t n = sequence_at(bytes, i, &bad);
    if (n == 0) return std::nullopt;
    out.append(bytes, i, n);
    i += n;
  }
  return out;
}

std::optional<std::string> encode(const std::string& text,
                                  const ftfy_data::SingleByteCodec& codec) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : to_code_points(text)) {
    int byte = -1;
    for (int b = 0; b < 256; ++b) {
      if (codec.chars[b] == cp) {
        byte = b;
        break;
      }
    }
    if (byte < 0) return std::nullopt;
    out += static_cast<char>(byte);
  }
  return out;
}

std::string decode(const std::string& bytes, const ftfy_data::SingleByteCodec& codec) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, codec.chars[static_cast<unsigned char>(c)]);
  return out;
}

std::optional<std::string> decode_strict_windows_1252(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const char32_t cp = ftfy_data::kStrictWindows1252[static_cast<unsigned char>(c)];
    if (cp == ftfy_data::kUndefined) return std::nullopt;
    append_utf8(out, cp);
  }
  return out;
}

const ftfy_data::SingleByteCodec& charmap_codec(const std::string& name) {
  for (const auto& codec : ftfy_data::kCharmapCodecs)
    if (name == codec.name) return codec;
  throw std::logic_error("spdit: ftfy has no codec " + name);
}

}  // namespace spdit::text::ftfy_codec
