#pragma once
// The pickle inside a torch.save zip (data.pkl) read as far as a state dict
// needs, without Python: dicts (also OrderedDict), lists, tuples, numbers,
// strings, and tensors rebuilt by torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter over storages named by persistent ids. Tensors are not
// materialised: each is a StoredTensor (dtype, shape, strides, byte range
// in the file), found through `storage_offset`, which gives where a storage's
// record starts in the file. Other Python objects become opaque values,
// named by class, that a state dict's tensors never pass through.
//
// LibTorch 1.13's own torch::jit::Unpickler was the first choice, but it has
// no SETITEM opcode, which Python's pickler emits for every dict of one item
// (and for the last item of a dict of 1001): a state dict's nested blocks
// often are such dicts.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "spdit/checkpoints/checkpoint.h"

namespace spdit::checkpoints::detail {

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
    kObject
  };
  Kind kind = Kind::kNone;
  int64_t int_value = 0;
  double float_value = 0;
  std::string text;  // a string; a global's or object's "module.name"
  std::vector<std::shared_ptr<PickleValue>> items;  // tuple, list
  std::vector<std::pair<std::shared_ptr<PickleValue>, std::shared_ptr<PickleValue>>>
      entries;          // dict, in order
  StoredTensor tensor;  // kTensor; kStorage: dtype, begin (the record's offset) and end
};
using PickleValuePtr = std::shared_ptr<PickleValue>;

/// Where storage `key`'s record starts in the file and how many bytes it has.
using StorageLocator = std::function<std::pair<uint64_t, uint64_t>(const std::string& key)>;

/// Reads the pickle `data` (`size` bytes). Throws std::runtime_error saying
/// what is wrong (an unknown opcode, a truncated stream, a tensor outside its
/// storage); the caller names the file.
PickleValuePtr read_state_dict_pickle(const char* data, size_t size, const StorageLocator& storage);

}  // namespace spdit::checkpoints::detail
