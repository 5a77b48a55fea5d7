#pragma once
// ftfy's mojibake repair: fix_encoding and its one step
// (ftfy/__init__.py: fix_encoding_and_explain, _fix_encoding_one_step_and_explain).
#include <string>

namespace spdit::text::ftfy_encoding {

/// ftfy.fix_encoding(text) with the default config: one step at a time until
/// the text stops changing.
std::string fix_encoding(const std::string& text);

/// One step: re-decode the whole text from the first single-byte codec that
/// can encode it and whose bytes decode as UTF-8 (after restoring lost
/// U+A0 bytes and marking lost bytes); else fix UTF-8-looking stretches one by
/// one; else Latin-1 -> Windows-1252; else C1 controls as Windows-1252.
std::string fix_encoding_one_step(const std::string& text);

}  // namespace spdit::text::ftfy_encoding
