#pragma once
// A checkpoint as a user holds it, read in place. One .safetensors file, a
// sharded set (`*-0000k-of-0000n.safetensors` and its `.index.json`), or a
// folder: a diffusers model folder (its `transformer/` is read), a
// `transformer/` folder itself, or a folder of shards. Files are
// memory-mapped read-only: a tensor is a view of the file's pages in its
// stored dtype (no copy, nothing allocated), and ranks on one machine share
// those pages through the page cache. A PyTorch zip checkpoint (`.pth`,
// torch_zip_checkpoint.h) opens the same way.
//
//   auto ckpt = spdit::checkpoints::Checkpoint::open("FLUX.1-dev/");
//   at::Tensor w = ckpt.tensor("x_embedder.weight");   // bf16, in place
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace spdit::checkpoints {

/// One tensor as stored: its dtype, shape, and where its bytes are.
struct StoredTensor {
  at::ScalarType dtype = at::kFloat;
  std::string dtype_name;  // as the file names it ("BF16")
  std::vector<int64_t> shape;
  size_t file = 0;     // index into Checkpoint::files()
  uint64_t begin = 0;  // byte range, from the start of the file
  uint64_t end = 0;
  /// Element strides when not contiguous (a .pth tensor may be a strided
  /// view of its storage); empty: contiguous.
  std::vector<int64_t> strides;
  int64_t bytes() const { return static_cast<int64_t>(end - begin); }
};

/// The tensors a safetensors header lists, checked against a file of
/// `file_size` bytes (names, dtypes, shapes, ranges, no overlap, no
/// duplicate): throws naming the file and what is wrong. `data` holds at
/// least the first 8 + header-length bytes.
std::map<std::string, StoredTensor> parse_safetensors_header(const char* data, uint64_t available,
                                                             uint64_t file_size,
                                                             const std::string& file);

/// The safetensors dtype name of `t` ("BF16"), or throws.
std::string safetensors_dtype_name(at::ScalarType t);

class Checkpoint {
 public:
  /// Opens `path` (file, index.json, or folder as above). Throws saying what
  /// was looked for when nothing there is a checkpoint.
  static Checkpoint open(const std::string& path);

  /// The .safetensors files read, in order.
  const std::vector<std::string>& files() const;
  /// Every tensor, by name.
  const std::map<std::string, StoredTensor>& tensors() const;
  bool has(const std::string& name) const;
  /// A view of the tensor's bytes in the file, in its stored dtype. The
  /// mapping stays alive as long as any such view does.
  at::Tensor tensor(const std::string& name) const;
  /// The text of the config.json beside the weights, or "" when there is none.
  const std::string& config_json() const;
  /// Where the config came from ("" when none).
  const std::string& config_path() const;
  /// Bytes of all tensors' data.
  int64_t data_bytes() const;
  /// Gives back this process's pages under `view` (a view of this
  /// checkpoint's files; anything else is left alone) once it was converted
  /// and is no longer read: they stay in the page cache, shared, and would
  /// be read again if touched. Keeps a converting load's resident set at the
  /// converted weights instead of those plus the whole file.
  void release_pages(const at::Tensor& view) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// Writes `tensors` (any dtype above) as a safetensors file, with optional
/// string metadata.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Writes a safetensors file whose header lists `layout` (name -> dtype,
/// shape) and whose data region is a hole of the right size: the file system
/// stores none of it and it reads as zeros. Real-size layouts for tests.
void write_sparse_safetensors(
    const std::string& path,
    const std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>>& layout);

}  // namespace spdit::checkpoints
