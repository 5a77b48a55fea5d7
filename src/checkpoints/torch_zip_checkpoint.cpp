#include "spdit/checkpoints/torch_zip_checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

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

std::string key_text(const c10::IValue& key) {
  if (key.isString()) return key.toStringRef();
  if (key.isInt()) return std::to_string(key.toInt());
  return "";  // other keys cannot name a tensor
}

bool holds_tensors(const c10::IValue& v) {
  if (v.isTensor()) return true;
  if (!v.isGenericDict()) return false;
  for (const auto& e : v.toGenericDict()) {
    if (holds_tensors(e.value())) return true;
  }
  return false;
}

// The tensors under `v`, named by their keys joined with dots.
void flatten(const c10::IValue& v, const std::string& prefix, std::vector<std::pair<std::string, at::Tensor>>& out) {
  if (v.isTensor()) {
    out.emplace_back(prefix, v.toTensor());
    return;
  }
  if (!v.isGenericDict()) return;
  for (const auto& e : v.toGenericDict()) {
    const std::string k = key_text(e.key());
    if (k.empty()) continue;
    flatten(e.value(), prefix.empty() ? k : prefix + "." + k, out);
  }
}

std::string dtype_name(at::ScalarType t) {
  try {
    return safetensors_dtype_name(t);
  } catch (const std::exception&) {
    return c10::toString(t);
  }
}

}  // namespace

bool is_torch_zip(const char* data, uint64_t available) {
  return available >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0;
}

bool is_legacy_torch_save(const char* data, uint64_t available) {
  // Pickle protocol 2, then the legacy format's magic number as a 10-byte long.
  return available >= 4 && static_cast<uint8_t>(data[0]) == 0x80 && static_cast<uint8_t>(data[1]) == 0x02 &&
         static_cast<uint8_t>(data[2]) == 0x8a && static_cast<uint8_t>(data[3]) == 0x0a;
}

std::map<std::string, StoredTensor> parse_torch_zip(const char* data, uint64_t size, const std::string& file) {
  if (is_legacy_torch_save(data, size)) {
    bad(file, "is in torch.save's legacy format (PyTorch before 1.6, or _use_new_zipfile_serialization=False), "
              "which spdit does not read; save it again with a newer PyTorch: "
              "torch.save(torch.load(old), new)");
  }
  if (!is_torch_zip(data, size)) {
    bad(file, "is not a PyTorch zip checkpoint (torch.save's files start with the zip signature 'PK'); "
              "give a .pth written by torch.save, or a .safetensors file");
  }
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<MappedSpan>(data, size));
  } catch (const std::exception& e) {
    bad(file, "is not a readable zip archive (truncated or corrupt?): " + error_text(e));
  }
  if (!reader->hasRecord("data.pkl")) {
    bad(file, "is a zip archive without data.pkl: not a torch.save file (a TorchScript archive holds "
              "constants.pkl and code/, and is not a state dict)");
  }
  at::DataPtr pickle;
  size_t pickle_size = 0;
  try {
    std::tie(pickle, pickle_size) = reader->getRecord("data.pkl");
  } catch (const std::exception& e) {
    bad(file, "cannot read data.pkl (corrupt?): " + error_text(e));
  }
  size_t read_pos = 0;
  auto read_pickle = [&](char* buf, size_t n) {
    n = std::min(n, pickle_size - read_pos);
    std::memcpy(buf, static_cast<const char*>(pickle.get()) + read_pos, n);
    read_pos += n;
    return n;
  };
  // Each storage is the file's own bytes: a pointer into the mapping, owned by nobody.
  auto read_record = [&](const std::string& key) {
    const std::string name = "data/" + key;
    if (!reader->hasRecord(name)) bad(file, "the pickle names storage '" + key + "', which the archive lacks");
    const size_t offset = reader->getRecordOffset(name);
    if (offset > size) bad(file, "storage '" + key + "' starts past the end of the file (corrupt?)");
    return at::DataPtr(const_cast<char*>(data + offset), at::Device(at::kCPU));
  };
  auto no_classes = [&](const c10::QualifiedName& name) -> c10::StrongTypePtr {
    bad(file, "the pickle holds a Python object of class '" + name.qualifiedName() +
                  "', not only dicts of tensors; save the state_dict: torch.save(model.state_dict(), path)");
  };
  c10::IValue root;
  try {
    torch::jit::Unpickler unpickler(read_pickle, no_classes, nullptr, read_record, c10::nullopt);
    root = unpickler.parse_ivalue();
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).rfind("spdit:", 0) == 0) throw;
    bad(file, "cannot unpickle data.pkl: " + error_text(e));
  } catch (const std::exception& e) {
    bad(file, "cannot unpickle data.pkl: " + error_text(e));
  }
  if (!root.isGenericDict()) {
    bad(file, "holds a pickled " + root.tagKind() + ", not a dict of tensors (a state_dict)");
  }
  // {"state_dict": {...}, "epoch": 3}: the names are the inner dict's.
  const c10::IValue* top = &root;
  c10::IValue inner;
  std::vector<std::string> with_tensors;
  for (const auto& e : root.toGenericDict()) {
    if (holds_tensors(e.value())) with_tensors.push_back(key_text(e.key()));
  }
  if (with_tensors.size() == 1 &&
      (with_tensors[0] == "state_dict" || with_tensors[0] == "model" || with_tensors[0] == "module")) {
    inner = root.toGenericDict().at(c10::IValue(with_tensors[0]));
    top = &inner;
  }
  std::vector<std::pair<std::string, at::Tensor>> found;
  flatten(*top, "", found);
  if (found.empty()) bad(file, "holds a dict without tensors");
  std::map<std::string, StoredTensor> out;
  for (const auto& [name, t] : found) {
    const auto* storage = static_cast<const char*>(t.storage().data());
    const uint64_t storage_begin = storage ? static_cast<uint64_t>(storage - data) : 0;
    if (storage && (storage < data || storage_begin + t.storage().nbytes() > size)) {
      bad(file, "tensor '" + name + "' needs bytes [" + std::to_string(storage_begin) + ", " +
                    std::to_string(storage_begin + t.storage().nbytes()) + ") but the file has " +
                    std::to_string(size) + " (truncated?)");
    }
    StoredTensor s;
    s.dtype = t.scalar_type();
    s.dtype_name = dtype_name(s.dtype);
    s.shape = t.sizes().vec();
    if (t.numel() > 0) {
      int64_t span = 1;  // elements from the first to the last one addressed
      for (int64_t d = 0; d < t.dim(); ++d) span += (t.size(d) - 1) * t.stride(d);
      s.begin = static_cast<uint64_t>(static_cast<const char*>(t.data_ptr()) - data);
      s.end = s.begin + static_cast<uint64_t>(span) * t.element_size();
      if (s.end > storage_begin + t.storage().nbytes()) {
        bad(file, "tensor '" + name + "' reaches past the end of its storage (corrupt?)");
      }
      if (!t.is_contiguous()) s.strides = t.strides().vec();
    }
    if (!out.emplace(name, std::move(s)).second) bad(file, "two tensors are named '" + name + "'");
  }
  return out;
}

}  // namespace spdit::checkpoints
