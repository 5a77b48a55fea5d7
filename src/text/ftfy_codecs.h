#pragma once
// The encoders and decoders ftfy moves text through, each as Python does it:
// UTF-8 (strict, and with errors="replace"), ftfy's "utf-8-variants" (CESU-8
// surrogate pairs and Java's C0 80 accepted) and the single-byte codecs of
// ftfy_tables.h. Text is UTF-8 in std::string; bytes are std::string too.
#include <optional>
#include <string>

#include "ftfy_tables.h"

namespace spdit::text::ftfy_codec {

/// Code points of valid UTF-8 text (no checks: the text came from a decoder).
std::u32string to_code_points(const std::string& utf8);
/// UTF-8 of code points.
std::string to_utf8(const std::u32string& code_points);
void append_utf8(std::string& out, char32_t cp);

/// bytes.decode("utf-8"); nullopt where Python raises UnicodeDecodeError.
std::optional<std::string> decode_utf8(const std::string& bytes);
/// bytes.decode("utf-8", "replace"): each maximal ill-formed subpart -> U+FFFD.
std::string decode_utf8_replace(const std::string& bytes);
/// bytes.decode("utf-8-variants") of ftfy.bad_codecs.utf8_variants.
std::optional<std::string> decode_utf8_variants(const std::string& bytes);

/// text.encode(codec); nullopt where a character has no byte (Python raises).
std::optional<std::string> encode(const std::string& text, const ftfy_data::SingleByteCodec& codec);
/// bytes.decode(codec): total, every byte has a character.
std::string decode(const std::string& bytes, const ftfy_data::SingleByteCodec& codec);
/// bytes.decode("windows-1252") (strict); nullopt on its five undefined bytes.
std::optional<std::string> decode_strict_windows_1252(const std::string& bytes);

/// The codec of chardata.CHARMAP_ENCODINGS called `name` ("sloppy-windows-1252", ...).
const ftfy_data::SingleByteCodec& charmap_codec(const std::string& name);

}  // namespace spdit::text::ftfy_codec
