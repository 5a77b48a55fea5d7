#include "spdit/checkpoints/torch_zip_checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "state_dict_pickle.h"

namespace spdit::checkpoints {
namespace {

[[noreturn]] void bad(const std::string& file, const std::string& what) {
  throw std::runtime_error("spdit: PyTorch checkpoint '" + file + "': " + what);
}

// The mapped file as LibTorch's zip reader reads it (its reads of the zip
// directories and of data.pkl are copies; the storages are not read here).
class MappedSpan : public caffe2::serialize::ReadAdapterInterface {
 public:
  MappedSpan(const char* data, uint64_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= size_) return 0;
    n = std::min<uint64_t>(n, size_ - pos);
    std::memcpy(buf, data_ + pos, n);
    return n;
  }

 private:
  const char* data_;
  uint64_t size_;
};

std::string error_text(const std::exception& e) {
  if (const auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

using detail::PickleValue;
using detail::PickleValuePtr;

std::string key_text(const PickleValuePtr& key) {
  if (key->kind == PickleValue::Kind::kString) return key->text;
  if (key->kind == PickleValue::Kind::kInt) return std::to_string(key->int_value);
  return "";  // other keys cannot name a tensor
}

// State dicts nest a few levels; a dict that holds itself (a crafted memo
// reference) must not recurse forever.
constexpr int kMaxDepth = 64;

bool holds_tensors(const PickleValuePtr& v, int depth = 0) {
  if (v->kind == PickleValue::Kind::kTensor) return true;
  if (v->kind != PickleValue::Kind::kDict || depth > kMaxDepth) return false;
  for (const auto& [k, x] : v->entries) {
    if (holds_tensors(x, depth + 1)) return true;
  }
  return false;
}

// The tensors under `v`, named by their keys joined with dots.
void flatten(const PickleValuePtr& v, const std::string& prefix,
             std::map<std::string, StoredTensor>& out, const std::string& file, int depth = 0) {
  if (depth > kMaxDepth)
    bad(file, "dicts nest deeper than " + std::to_string(kMaxDepth) + " levels (corrupt?)");
  if (v->kind == PickleValue::Kind::kTensor) {
    StoredTensor t = v->tensor;
    try {
      t.dtype_name = safetensors_dtype_name(t.dtype);
    } catch (const std::exception&) {
      t.dtype_name = c10::toString(t.dtype);
    }
    if (!out.emplace(prefix, std::move(t)).second)
      bad(file, "two tensors are named '" + prefix + "'");
    return;
  }
  if (v->kind != PickleValue::Kind::kDict) return;
  for (const auto& [key, value] : v->entries) {
    const std::string k = key_text(key);
    if (!k.empty()) flatten(value, prefix.empty() ? k : prefix + "." + k, out, file, depth + 1);
  }
}

}  // namespace

bool is_torch_zip(const char* data, uint64_t available) {
  return available >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0;
}

bool is_legacy_torch_save(const char* data, uint64_t available) {
  // Pickle protocol 2, then the legacy format's magic number as a 10-byte long.
  return available >= 4 && static_cast<uint8_t>(data[0]) == 0x80 &&
         static_cast<uint8_t>(data[1]) == 0x02 && static_cast<uint8_t>(data[2]) == 0x8a &&
         static_cast<uint8_t>(data[3]) == 0x0a;
}

std::map<std::string, StoredTensor> parse_torch_zip(const char* data, uint64_t size,
                                                    const std::string& file) {
  if (is_legacy_torch_save(data, size)) {
    bad(file,
        "is in torch.save's legacy format (PyTorch before 1.6, or "
        "_use_new_zipfile_serialization=False), "
        "which spdit does not read; save it again with a newer PyTorch: "
        "torch.save(torch.load(old), new)");
  }
  if (!is_torch_zip(data, size)) {
    bad(file,
        "is not a PyTorch zip checkpoint (torch.save's files start with "
        "the zip signature 'PK'); "
        "give a .pth written by torch.save, or a .safetensors file");
  }
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(
        std::make_shared<MappedSpan>(data, size));
  } catch (const std::exception& e) {
    bad(file, "is not a readable zip archive (truncated or corrupt?): " + error_text(e));
  }
  if (!reader->hasRecord("data.pkl")) {
    bad(file,
        "is a zip archive without data.pkl: not a torch.save file (a "
        "TorchScript archive holds "
        "constants.pkl and code/, and is not a state dict)");
  }
  at::DataPtr pickle;
  size_t pickle_size = 0;
  try {
    std::tie(pickle, pickle_size) = reader->getRecord("data.pkl");
  } catch (const std::exception& e) {
    bad(file, "cannot read data.pkl (corrupt?): " + error_text(e));
  }
  // A storage is its record's bytes in the file: where it starts, and at
  // most the rest of the file (the zip's directory, checked above, is at the
  // end).
  auto locate = [&](const std::string& key) -> std::pair<uint64_t, uint64_t> {
    const std::string name = "data/" + key;
    if (!reader->hasRecord(name))
      throw std::runtime_error("the pickle names storage '" + key + "', which the archive lacks");
    const uint64_t offset = reader->getRecordOffset(name);
    if (offset > size)
      throw std::runtime_error("storage '" + key + "' starts past the end of the file (corrupt?)");
    return {offset, size - offset};
  };
  PickleValuePtr root;
  try {
    root =
        detail::read_state_dict_pickle(static_cast<const char*>(pickle.get()), pickle_size, locate);
  } catch (const std::exception& e) {
    bad(file, "cannot read data.pkl: " + error_text(e));
  }
  if (root->kind != PickleValue::Kind::kDict) {
    bad(file, "holds a pickled " +
                  (root->text.empty() ? std::string("value") : "'" + root->text + "'") +
                  ", not a dict of tensors (a state_dict); save one with "
                  "torch.save(model.state_dict(), path)");
  }
  // {"state_dict": {...}, "epoch": 3}: the names are the inner dict's.
  PickleValuePtr top = root;
  std::vector<PickleValuePtr> with_tensors;
  std::string only_key;
  for (const auto& [key, value] : root->entries) {
    if (holds_tensors(value)) {
      with_tensors.push_back(value);
      only_key = key_text(key);
    }
  }
  if (with_tensors.size() == 1 &&
      (only_key == "state_dict" || only_key == "model" || only_key == "module")) {
    top = with_tensors[0];
  }
  std::map<std::string, StoredTensor> out;
  flatten(top, "", out, file);
  if (out.empty()) bad(file, "holds a dict without tensors");
  return out;
}

}  // namespace spdit::checkpoints
