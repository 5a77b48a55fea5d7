#pragma once
// Fields of a transformers config.json, read with errors that name the file
// and the field.
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace spdit::text {

nlohmann::json parse_config(const std::string& text, const std::string& where);
int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback,
                   const std::string& where);
double config_double(const nlohmann::json& j, const char* key, double fallback,
                     const std::string& where);
std::string config_string(const nlohmann::json& j, const char* key, const std::string& fallback,
                          const std::string& where);
/// Throws naming the first field that is not > 0.
void require_positive(const std::vector<std::pair<const char*, int64_t>>& fields,
                      const std::string& where);

}  // namespace spdit::text
