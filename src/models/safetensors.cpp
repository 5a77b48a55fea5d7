#include <fcntl.h>
#include <sys/stat.h>
#include <torch/nn/module.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "spdit/models/weights.h"

namespace spdit::models {
namespace {

// Checkpoints of today's largest DiTs have headers of a few MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DType {
  const char* name;
  at::ScalarType type;
  int64_t size;
};
const DType kDTypes[] = {{"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
                         {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
                         {"I16", at::kShort, 2},     {"I8", at::kChar, 1},  {"U8", at::kByte, 1},
                         {"BOOL", at::kBool, 1}};

[[noreturn]] void bad(const std::string& file, const std::string& what) {
  throw std::runtime_error("spdit: safetensors file '" + file + "': " + what);
}

const DType* dtype_by_name(const std::string& n) {
  for (const auto& d : kDTypes) {
    if (n == d.name) return &d;
  }
  return nullptr;
}

const DType& dtype_of(at::ScalarType t, const std::string& tensor) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d;
  }
  throw std::invalid_argument("spdit: cannot save tensor '" + tensor + "' of dtype " +
                              std::string(c10::toString(t)) + " as safetensors");
}

}  // namespace

std::map<std::string, at::Tensor> parse_safetensors(const std::string& bytes, const std::string& file) {
  if (bytes.size() < 8) bad(file, "only " + std::to_string(bytes.size()) + " bytes; a header needs 8 (truncated?)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeaderBytes) {
    bad(file, "header claims " + std::to_string(header_len) + " bytes, more than the 100 MB limit (corrupt?)");
  }
  if (header_len > bytes.size() - 8) {
    bad(file, "header claims " + std::to_string(header_len) + " bytes but the file has " +
                  std::to_string(bytes.size() - 8) + " after the length (truncated?)");
  }
  nlohmann::json header;
  // JSON keeps the last of two equal keys; a checkpoint naming a tensor
  // twice is ambiguous, so the parser watches the top-level keys itself.
  std::set<std::string> seen;
  std::string duplicate;
  auto watch = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second &&
        duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<int64_t>(header_len), watch);
  } catch (const std::exception& e) {
    bad(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) bad(file, "the header names tensor '" + duplicate + "' twice (corrupt?)");
  if (!header.is_object()) bad(file, "header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_len = bytes.size() - data_start;
  std::map<std::string, at::Tensor> out;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;  // to find overlaps
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const auto& e = it.value();
    const std::string where = "tensor '" + name + "'";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      bad(file, where + " needs dtype, shape and data_offsets");
    }
    if (!e["dtype"].is_string()) bad(file, where + ": dtype is not a string");
    const DType* dt = dtype_by_name(e["dtype"].get<std::string>());
    if (!dt) bad(file, where + ": unsupported dtype " + e["dtype"].dump());
    if (!e["shape"].is_array()) bad(file, where + ": shape is not a list");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) bad(file, where + ": shape entry " + d.dump() + " is not a non-negative integer");
      const uint64_t v = d.get<uint64_t>();
      if (v > (1ull << 40) || (v && numel > (1ull << 50) / v)) bad(file, where + ": shape is absurdly large");
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      bad(file, where + ": data_offsets must be [begin, end]");
    }
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_len) {
      bad(file, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                    "] fall outside the " + std::to_string(data_len) + " data bytes");
    }
    if (en - b != numel * static_cast<uint64_t>(dt->size)) {
      bad(file, where + ": " + std::to_string(en - b) + " bytes for a " + e["dtype"].get<std::string>() +
                    " tensor of shape " + e["shape"].dump() + " (needs " +
                    std::to_string(numel * dt->size) + ")");
    }
    if (en > b) ranges.push_back({{b, en}, name});
    auto t = at::empty(shape, at::TensorOptions().dtype(dt->type));
    if (numel) std::memcpy(t.data_ptr(), bytes.data() + data_start + b, en - b);
    out.emplace(name, t);
  }
  // Two tensors over the same bytes: a writer's bug or a crafted file.
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first.first < ranges[i - 1].first.second) {
      const auto& [a, an] = ranges[i - 1];
      const auto& [c, cn] = ranges[i];
      bad(file, "tensors '" + an + "' [" + std::to_string(a.first) + ", " + std::to_string(a.second) + ") and '" +
                    cn + "' [" + std::to_string(c.first) + ", " + std::to_string(c.second) +
                    ") overlap in the data (corrupt?)");
    }
  }
  return out;
}

std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  // Regular files only, read to the size the file system gives: a FIFO would
  // block the open until a writer came, and /dev/zero never ends.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("spdit: cannot open weights file '" + path + "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISFIFO(st.st_mode)  ? "a FIFO"
                       : S_ISCHR(st.st_mode) ? "a character device"
                       : S_ISDIR(st.st_mode) ? "a directory"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    throw std::runtime_error("spdit: weights file '" + path + "' is " + kind +
                             "; give a regular .safetensors file");
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw std::runtime_error("spdit: cannot open weights file '" + path + "': " + std::strerror(errno));
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = read(fd, &bytes[got], bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "the file shrank while it was read";
      close(fd);
      throw std::runtime_error("spdit: cannot read weights file '" + path + "': " + why);
    }
    got += static_cast<size_t>(n);
  }
  close(fd);
  return parse_safetensors(bytes, path);
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> order;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const auto& dt = dtype_of(t.scalar_type(), name);
    auto c = t.detach().to(at::kCPU).contiguous();
    const uint64_t n = static_cast<uint64_t>(c.numel()) * dt.size;
    header[name] = {{"dtype", dt.name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    order.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("spdit: cannot write weights file '" + path + "'");
  uint64_t len = h.size();
  char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>(len >> (8 * i) & 0xff);
  f.write(le, 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& c : order) {
    f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
  }
  if (!f) throw std::runtime_error("spdit: error writing weights file '" + path + "'");
}

}  // namespace spdit::models
