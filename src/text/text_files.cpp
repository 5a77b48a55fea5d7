#include "text_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace spdit::text {

bool file_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

void require_file(const std::string& path, const std::string& hint) {
  if (!file_exists(path)) throw std::runtime_error("spdit: no file " + path + hint);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("spdit: cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json read_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("spdit: " + path + " is not valid JSON: " + e.what());
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush())
    throw std::runtime_error("spdit: cannot write " + path + ": " + std::strerror(errno));
}

void make_folder(const std::string& folder) {
  std::string path = !folder.empty() && folder[0] == '/' ? "/" : "";
  std::istringstream parts(folder);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    path += part + "/";
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      throw std::runtime_error("spdit: cannot create folder " + path + ": " + std::strerror(errno));
    }
  }
}

}  // namespace spdit::text
