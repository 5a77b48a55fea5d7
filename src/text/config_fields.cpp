#include "config_fields.h"

#include <stdexcept>

namespace spdit::text {

nlohmann::json parse_config(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("spdit: " + where + " is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("spdit: " + where + " should hold a JSON object");
  return j;
}

int64_t config_int(const nlohmann::json& j, const char* key, int64_t fallback,
                   const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer()) {
    throw std::runtime_error("spdit: " + where + ": '" + key + "' should be an integer, not " +
                             j[key].dump());
  }
  return j[key].get<int64_t>();
}

double config_double(const nlohmann::json& j, const char* key, double fallback,
                     const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) {
    throw std::runtime_error("spdit: " + where + ": '" + key + "' should be a number, not " +
                             j[key].dump());
  }
  return j[key].get<double>();
}

std::string config_string(const nlohmann::json& j, const char* key, const std::string& fallback,
                          const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_string()) {
    throw std::runtime_error("spdit: " + where + ": '" + key + "' should be a string, not " +
                             j[key].dump());
  }
  return j[key].get<std::string>();
}

void require_positive(const std::vector<std::pair<const char*, int64_t>>& fields,
                      const std::string& where) {
  for (const auto& [name, value] : fields) {
    if (value <= 0) {
      throw std::runtime_error("spdit: " + where + ": '" + name + "' should be positive, not " +
                               std::to_string(value));
    }
  }
}

}  // namespace spdit::text
