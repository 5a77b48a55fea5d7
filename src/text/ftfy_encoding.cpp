#include "ftfy_encoding.h"

#include <optional>

#include "ftfy_codecs.h"
#include "ftfy_fixes.h"
#include "ftfy_tables.h"

namespace spdit::text::ftfy_encoding {

std::string fix_encoding_one_step(const std::string& text) {
  if (text.empty()) return text;
  if (ftfy_fixes::is_ascii(text) || !ftfy_fixes::is_bad(text)) return text;

  bool latin1_possible = false;
  for (const auto& codec : ftfy_data::kCharmapCodecs) {
    std::optional<std::string> bytes = ftfy_codec::encode(text, codec);
    if (!bytes) continue;
    const std::string name = codec.name;
    if (name == "latin-1") latin1_possible = true;
    if (name != "macroman" && ftfy_fixes::has_altered_utf8(*bytes))
      *bytes = ftfy_fixes::restore_byte_a0(*bytes);
    if (codec.sloppy) *bytes = ftfy_fixes::replace_lossy_sequences(*bytes);
    const bool variants =
        bytes->find('\xED') != std::string::npos || bytes->find('\xC0') != std::string::npos;
    std::optional<std::string> fixed =
        variants ? ftfy_codec::decode_utf8_variants(*bytes) : ftfy_codec::decode_utf8(*bytes);
    if (fixed) return *fixed;
  }

  if (ftfy_fixes::has_utf8_clue(text)) {
    std::string fixed = ftfy_fixes::decode_inconsistent_utf8(text);
    if (fixed != text) return fixed;
  }

  // ftfy asks whether "windows-1252" is among the possible encodings before
  // this; its list names only "sloppy-windows-1252", so the question is
  // always no and this branch runs whenever Latin-1 could encode the text.
  if (latin1_possible) {
    const auto bytes = ftfy_codec::encode(text, ftfy_codec::charmap_codec("latin-1"));
    std::optional<std::string> fixed = ftfy_codec::decode_strict_windows_1252(*bytes);
    if (fixed && *fixed != text) return *fixed;
  }

  if (ftfy_fixes::has_c1_control(text)) return ftfy_fixes::fix_c1_controls(text);
  return text;
}

std::string fix_encoding(const std::string& text) {
  std::string current = text;
  while (true) {
    std::string next = fix_encoding_one_step(current);
    if (next == current) return next;
    current = std::move(next);
  }
}

}  // namespace spdit::text::ftfy_encoding
