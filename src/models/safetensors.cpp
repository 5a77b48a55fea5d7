// The whole-map safetensors API of weights.h, on the checkpoint reader
// (spdit/checkpoints/checkpoint.h): one parser checks every file, a file is
// mapped rather than read, and its tensors are views of the mapping.
#include <sys/stat.h>

#include <cstring>
#include <stdexcept>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/models/weights.h"

namespace spdit::models {

std::map<std::string, at::Tensor> parse_safetensors(const std::string& bytes,
                                                    const std::string& file) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] :
       checkpoints::parse_safetensors_header(bytes.data(), bytes.size(), bytes.size(), file)) {
    auto x = at::empty(t.shape, at::TensorOptions().dtype(t.dtype));
    if (t.bytes())
      std::memcpy(x.data_ptr(), bytes.data() + t.begin, static_cast<size_t>(t.bytes()));
    out.emplace(name, x);
  }
  return out;
}

std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw std::runtime_error("spdit: weights file '" + path +
                             "' is a directory; give a regular .safetensors file");
  }
  auto ckpt = checkpoints::Checkpoint::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, t] : ckpt.tensors()) out.emplace(name, ckpt.tensor(name));
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  checkpoints::write_safetensors(path, tensors, metadata);
}

}  // namespace spdit::models
