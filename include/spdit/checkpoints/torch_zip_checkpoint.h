#pragma once
// PyTorch's zip checkpoints (`torch.save` since 1.6: `Wan2.1_VAE.pth`,
// `models_t5_umt5-xxl-enc-bf16.pth`) read without Python. The file is a zip
// whose records are stored uncompressed: `<archive>/data.pkl`, the pickled
// object, and `<archive>/data/<key>`, one record per storage. LibTorch's own
// zip reader (caffe2::serialize::PyTorchStreamReader) finds the records; a
// small unpickler of spdit's reads the pickle as far as a state dict needs
// (LibTorch 1.13's torch::jit::Unpickler lacks the SETITEM opcode that
// Python writes for one-item dicts). Each tensor is a byte range of its
// storage's record, so it is a view of the file's pages, as with
// safetensors (checkpoint.h), and nothing is copied.
//
//   auto ckpt = spdit::checkpoints::Checkpoint::open("Wan2.1/Wan2.1_VAE.pth");
//   at::Tensor w = ckpt.tensor("decoder.conv1.weight");   // fp32, in place
//
// Checkpoint::open takes a .pth file like a .safetensors file (it looks at
// the first bytes, not the name); the functions here are its parts.
#include <cstdint>
#include <map>
#include <string>

#include "spdit/checkpoints/checkpoint.h"

namespace spdit::checkpoints {

/// True when `data` (the first bytes of a file; at least 4 needed) starts a
/// zip archive, as torch.save's files do.
bool is_torch_zip(const char* data, uint64_t available);

/// True when `data` starts the pickle of torch.save's legacy format (before
/// PyTorch 1.6, or `_use_new_zipfile_serialization=False`), which spdit does
/// not read: the message of open says how to re-save such a file.
bool is_legacy_torch_save(const char* data, uint64_t available);

/// The tensors of the torch.save zip archive `data` (the whole file, `size`
/// bytes, mapped), by name: byte ranges and strides into `data`. The pickled
/// object must be a dict of tensors (a state_dict); nested dicts are
/// flattened with dots (`{"a": {"w": t}}` gives `a.w`), except that when
/// the only tensors are under one top-level `state_dict`, `model` or
/// `module` key (training scripts' `{"state_dict": ..., "epoch": 3}`), that
/// key is dropped. Values that are not tensors or dicts (an epoch number, a
/// string) are skipped. Throws naming
/// `file` and what is wrong: not a zip, a truncated zip, no data.pkl, a
/// pickle of something other than a dict (Python classes spdit cannot
/// rebuild), a storage that does not fit in the file.
std::map<std::string, StoredTensor> parse_torch_zip(const char* data, uint64_t size,
                                                    const std::string& file);

}  // namespace spdit::checkpoints
