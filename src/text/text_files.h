#pragma once
// Reading the small files of a tokenizer or model folder, with errors that
// name the file and say what the folder should hold.
#include <nlohmann/json.hpp>
#include <string>

namespace spdit::text {

bool file_exists(const std::string& path);
/// A file or a folder at `path`.
bool path_exists(const std::string& path);
/// Throws "no <path><hint>" when `path` is not a readable file.
void require_file(const std::string& path, const std::string& hint);
std::string read_text_file(const std::string& path);
/// Parses `path` as JSON; throws naming the file and the parser's message.
nlohmann::json read_json_file(const std::string& path);
void write_text_file(const std::string& path, const std::string& text);
/// Creates `folder` and the folders above it that are missing.
void make_folder(const std::string& folder);

}  // namespace spdit::text
