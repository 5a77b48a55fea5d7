#include "spdit/checkpoints/checkpoint.h"

#include "spdit/checkpoints/torch_zip_checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

namespace spdit::checkpoints {
namespace {

// Checkpoints of today's largest DiTs have headers of a few MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DType {
  const char* name;
  at::ScalarType type;
  int64_t size;
};
const DType kDTypes[] = {{"F64", at::kDouble, 8},    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},
                         {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8},  {"I32", at::kInt, 4},
                         {"I16", at::kShort, 2},     {"I8", at::kChar, 1},   {"U8", at::kByte, 1},
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

std::string os_error() { return std::strerror(errno); }

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) throw std::runtime_error("spdit: cannot read folder '" + dir + "': " + os_error());
  while (dirent* e = readdir(d)) names.emplace_back(e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("spdit: cannot read '" + path + "': " + os_error());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A regular file mapped copy-on-write: reads share the page cache with every
// other process that maps it; a write (a model changing a loaded weight in
// place) gets a private page instead of failing. MAP_NORESERVE: a writable
// private mapping larger than memory (a 57 GB Wan 14B file) is otherwise
// refused up front, though only written pages would ever need memory.
struct MappedFile {
  std::string path;
  char* base = nullptr;
  uint64_t size = 0;

  explicit MappedFile(std::string file) : path(std::move(file)) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      throw std::runtime_error("spdit: cannot open checkpoint file '" + path + "': " + os_error());
    }
    if (!S_ISREG(st.st_mode)) {
      // A FIFO would block the open until a writer came; /dev/zero never ends.
      const char* kind = S_ISFIFO(st.st_mode)   ? "a FIFO"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                         : S_ISBLK(st.st_mode)  ? "a block device"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                                                : "not a regular file";
      throw std::runtime_error("spdit: weights file '" + path + "' is " + kind +
                               "; give a regular .safetensors file (or its folder)");
    }
    size = static_cast<uint64_t>(st.st_size);
    if (size < 8)
      bad(path, "only " + std::to_string(size) + " bytes; a header needs 8 (truncated?)");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw std::runtime_error("spdit: cannot open checkpoint file '" + path + "': " + os_error());
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    const std::string why = p == MAP_FAILED ? os_error() : "";
    ::close(fd);
    if (p == MAP_FAILED)
      throw std::runtime_error("spdit: cannot map checkpoint file '" + path + "': " + why);
    base = static_cast<char*>(p);
  }
  ~MappedFile() {
    if (base) munmap(base, size);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
};

}  // namespace

std::string safetensors_dtype_name(at::ScalarType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d.name;
  }
  throw std::invalid_argument("spdit: dtype " + std::string(c10::toString(t)) +
                              " cannot be stored in safetensors");
}

std::map<std::string, StoredTensor> parse_safetensors_header(const char* data, uint64_t available,
                                                             uint64_t file_size,
                                                             const std::string& file) {
  if (available < 8)
    bad(file, "only " + std::to_string(available) + " bytes; a header needs 8 (truncated?)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | static_cast<uint8_t>(data[i]);
  if (header_len > kMaxHeaderBytes) {
    bad(file, "header claims " + std::to_string(header_len) +
                  " bytes, more than the 100 MB limit (corrupt?)");
  }
  if (header_len > available - 8) {
    bad(file, "header claims " + std::to_string(header_len) + " bytes but the file has " +
                  std::to_string(available - 8) + " after the length (truncated?)");
  }
  // JSON keeps the last of two equal keys; a header naming a tensor twice is
  // ambiguous, so the parser watches the top-level keys itself.
  std::set<std::string> seen;
  std::string duplicate;
  auto watch = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len, watch);
  } catch (const std::exception& e) {
    bad(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) bad(file, "the header names tensor '" + duplicate + "' twice (corrupt?)");
  if (!header.is_object()) bad(file, "header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_len = file_size - data_start;
  std::map<std::string, StoredTensor> out;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ranges;  // to find overlaps
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const auto& e = it.value();
    const std::string where = "tensor '" + name + "'";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets")) {
      bad(file, where + " needs dtype, shape and data_offsets");
    }
    if (!e["dtype"].is_string()) bad(file, where + ": dtype is not a string");
    const DType* dt = dtype_by_name(e["dtype"].get<std::string>());
    if (!dt) bad(file, where + ": unsupported dtype " + e["dtype"].dump());
    if (!e["shape"].is_array()) bad(file, where + ": shape is not a list");
    StoredTensor t;
    t.dtype = dt->type;
    t.dtype_name = dt->name;
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned())
        bad(file, where + ": shape entry " + d.dump() + " is not a non-negative integer");
      const uint64_t v = d.get<uint64_t>();
      if (v > (1ull << 40) || (v && numel > (1ull << 50) / v))
        bad(file, where + ": shape is absurdly large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      bad(file, where + ": data_offsets must be [begin, end]");
    }
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_len) {
      bad(file, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                    "] fall outside the " + std::to_string(data_len) + " data bytes (truncated?)");
    }
    if (en - b != numel * static_cast<uint64_t>(dt->size)) {
      bad(file, where + ": " + std::to_string(en - b) + " bytes for a " + dt->name +
                    " tensor of shape " + e["shape"].dump() + " (needs " +
                    std::to_string(numel * dt->size) + ")");
    }
    t.begin = data_start + b;
    t.end = data_start + en;
    if (en > b) ranges.push_back({{b, en}, name});
    out.emplace(name, std::move(t));
  }
  // Two tensors over the same bytes: a writer's bug or a crafted file.
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first.first < ranges[i - 1].first.second) {
      const auto& [a, an] = ranges[i - 1];
      const auto& [c, cn] = ranges[i];
      bad(file, "tensors '" + an + "' [" + std::to_string(a.first) + ", " +
                    std::to_string(a.second) + ") and '" + cn + "' [" + std::to_string(c.first) +
                    ", " + std::to_string(c.second) + ") overlap in the data (corrupt?)");
    }
  }
  return out;
}

struct Checkpoint::Impl {
  std::vector<std::string> files;
  std::vector<std::shared_ptr<MappedFile>> maps;
  std::map<std::string, StoredTensor> tensors;
  std::string config_json, config_path;
};

void Checkpoint::release_pages(const at::Tensor& view) const {
  if (!view.defined() || !view.is_contiguous()) return;
  const auto* begin = static_cast<const char*>(view.data_ptr());
  const auto* end = begin + view.numel() * view.element_size();
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  for (const auto& map : impl_->maps) {
    if (begin < map->base || end > map->base + map->size) continue;
    // Whole pages inside the view only: a neighbour may be in use in place.
    const uintptr_t from = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
    const uintptr_t to = reinterpret_cast<uintptr_t>(end) / page * page;
    if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
    return;
  }
}

namespace {

// The weight files a folder holds: its index's, or its one file, or its shards.
std::vector<std::string> weight_files_of_folder(const std::string& dir, std::string* index) {
  std::vector<std::string> indexes, files;
  for (const auto& n : list_dir(dir)) {
    if (ends_with(n, ".safetensors.index.json")) indexes.push_back(n);
    if (ends_with(n, ".safetensors")) files.push_back(n);
  }
  if (indexes.size() == 1) {
    *index = dir + "/" + indexes[0];
    return {};
  }
  if (indexes.size() > 1) {
    throw std::runtime_error("spdit: folder '" + dir + "' holds " + std::to_string(indexes.size()) +
                             " .safetensors.index.json files; give the one to read");
  }
  if (files.empty()) {
    throw std::runtime_error("spdit: folder '" + dir +
                             "' holds no .safetensors file, no index and no transformer/ folder; "
                             "give a checkpoint file, or a diffusers model folder");
  }
  const bool shards = std::all_of(files.begin(), files.end(), [](const std::string& f) {
    return f.find("-of-") != std::string::npos;
  });
  if (files.size() > 1 && !shards) {
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
    throw std::runtime_error("spdit: folder '" + dir + "' holds several checkpoints (" + list +
                             "); give the file to read");
  }
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(dir + "/" + f);
  return out;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path_in) {
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  Checkpoint c;
  c.impl_ = std::make_shared<Impl>();
  Impl& im = *c.impl_;
  std::string index, folder;
  std::vector<std::string> files;
  if (is_dir(path)) {
    // A diffusers model folder: the transformer is in transformer/.
    folder = is_dir(path + "/transformer") ? path + "/transformer" : path;
    files = weight_files_of_folder(folder, &index);
  } else if (ends_with(path, ".index.json")) {
    index = path;
    folder = dir_of(path);
  } else {
    files = {path};
    folder = dir_of(path);  // Wan's release keeps its config.json beside the file
  }
  std::map<std::string, std::string> weight_map;  // tensor -> file, from an index
  if (!index.empty()) {
    folder = dir_of(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(index));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("spdit: index '" + index + "' is not valid JSON: " + e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty()) {
      throw std::runtime_error("spdit: index '" + index + "' has no weight_map");
    }
    std::set<std::string> unique;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string() || it.value().get<std::string>().find('/') != std::string::npos) {
        throw std::runtime_error("spdit: index '" + index + "': tensor '" + it.key() +
                                 "' names no file of its folder");
      }
      weight_map[it.key()] = it.value().get<std::string>();
      unique.insert(it.value().get<std::string>());
    }
    for (const auto& f : unique) files.push_back(folder + "/" + f);
  }
  if (!folder.empty() && access((folder + "/config.json").c_str(), R_OK) == 0) {
    im.config_path = folder + "/config.json";
    im.config_json = read_text(im.config_path);
  }
  for (size_t i = 0; i < files.size(); ++i) {
    auto map = std::make_shared<MappedFile>(files[i]);
    // torch.save's zip files (.pth) by their first bytes, or by the name
    // when they are not one (to say why).
    const bool torch_file = is_torch_zip(map->base, map->size) ||
                            is_legacy_torch_save(map->base, map->size) ||
                            ends_with(files[i], ".pth") || ends_with(files[i], ".pt");
    auto tensors = torch_file ? parse_torch_zip(map->base, map->size, files[i])
                              : parse_safetensors_header(map->base, map->size, map->size, files[i]);
    for (auto& [name, t] : tensors) {
      t.file = i;
      auto [it, fresh] = im.tensors.emplace(name, t);
      if (!fresh) {
        throw std::runtime_error("spdit: tensor '" + name + "' is in both '" +
                                 im.files[it->second.file] + "' and '" + files[i] + "'");
      }
    }
    im.files.push_back(files[i]);
    im.maps.push_back(std::move(map));
  }
  if (!weight_map.empty()) {
    for (const auto& [name, file] : weight_map) {
      auto it = im.tensors.find(name);
      if (it == im.tensors.end() || im.files[it->second.file] != folder + "/" + file) {
        throw std::runtime_error("spdit: index '" + index + "' puts tensor '" + name + "' in '" +
                                 file +
                                 "', which does not hold it (a missing or mismatched shard?)");
      }
    }
    for (const auto& [name, t] : im.tensors) {
      if (!weight_map.count(name)) {
        throw std::runtime_error("spdit: tensor '" + name + "' of '" + im.files[t.file] +
                                 "' is not in the index '" + index + "'");
      }
    }
  }
  return c;
}

const std::vector<std::string>& Checkpoint::files() const { return impl_->files; }
const std::map<std::string, StoredTensor>& Checkpoint::tensors() const { return impl_->tensors; }
bool Checkpoint::has(const std::string& name) const { return impl_->tensors.count(name) > 0; }
const std::string& Checkpoint::config_json() const { return impl_->config_json; }
const std::string& Checkpoint::config_path() const { return impl_->config_path; }

int64_t Checkpoint::data_bytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : impl_->tensors) n += t.bytes();
  return n;
}

at::Tensor Checkpoint::tensor(const std::string& name) const {
  auto it = impl_->tensors.find(name);
  if (it == impl_->tensors.end()) {
    throw std::out_of_range("spdit: the checkpoint has no tensor '" + name + "'");
  }
  const StoredTensor& t = it->second;
  auto map = impl_->maps[t.file];
  // The view holds the mapping: it is unmapped when the last view goes.
  auto* keep = new std::shared_ptr<MappedFile>(map);
  const auto options = at::TensorOptions().dtype(t.dtype);
  if (!t.strides.empty()) {
    return at::from_blob(
        map->base + t.begin, t.shape, t.strides, [keep](void*) { delete keep; }, options);
  }
  return at::from_blob(
      map->base + t.begin, t.shape, [keep](void*) { delete keep; }, options);
}

namespace {

// The 8-byte length and the header (padded so that the data starts 8-byte
// aligned) of tensors laid out in `order`; returns the data's size.
uint64_t write_header(
    std::ofstream& f, const std::string& path,
    const std::vector<std::tuple<std::string, at::ScalarType, std::vector<int64_t>>>& order,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, dtype, shape] : order) {
    uint64_t n = c10::elementSize(dtype);
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    header[name] = {{"dtype", safetensors_dtype_name(dtype)},
                    {"shape", shape},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  if (!f) throw std::runtime_error("spdit: cannot write '" + path + "': " + os_error());
  const uint64_t len = h.size();
  char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>(len >> (8 * i) & 0xff);
  f.write(le, 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  return offset;
}

}  // namespace

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<std::tuple<std::string, at::ScalarType, std::vector<int64_t>>> order;
  std::vector<at::Tensor> data;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(at::kCPU).contiguous();
    order.emplace_back(name, c.scalar_type(), c.sizes().vec());
    data.push_back(c);
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  write_header(f, path, order, metadata);
  for (const auto& c : data) {
    f.write(static_cast<const char*>(c.data_ptr()),
            static_cast<std::streamsize>(c.numel() * c.element_size()));
  }
  if (!f)
    throw std::runtime_error("spdit: error writing weights file '" + path + "': " + os_error());
}

void write_sparse_safetensors(
    const std::string& path,
    const std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>>& layout) {
  std::vector<std::tuple<std::string, at::ScalarType, std::vector<int64_t>>> order;
  for (const auto& [name, spec] : layout) order.emplace_back(name, spec.first, spec.second);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const uint64_t data = write_header(f, path, order, {});
  const auto end = static_cast<off_t>(f.tellp()) + static_cast<off_t>(data);
  f.close();
  if (!f || truncate(path.c_str(), end) != 0) {
    throw std::runtime_error("spdit: cannot size '" + path + "': " + os_error());
  }
}

}  // namespace spdit::checkpoints
