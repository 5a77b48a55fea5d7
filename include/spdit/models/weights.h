#pragma once
// Checkpoints in the safetensors format, with the public checkpoints' tensor
// names. The reader trusts nothing: header size, JSON, dtypes, shapes and
// offsets are all checked against the file before a byte is used.
#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace spdit::models {

/// Every tensor of a .safetensors file (F64, F32, F16, BF16, I64, I32, I16,
/// I8, U8, BOOL), as views of the memory-mapped file (copy-on-write; see
/// spdit/checkpoints/checkpoint.h for shards and folders). Throws naming the
/// file and what is wrong.
std::map<std::string, at::Tensor> read_safetensors(const std::string& path);

/// Parses the bytes of a whole .safetensors file (what read_safetensors reads).
std::map<std::string, at::Tensor> parse_safetensors(const std::string& bytes,
                                                    const std::string& name);

/// Writes tensors (any of the dtypes above) with optional string metadata.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Saves every parameter and buffer of `model` under its state-dict name.
void save_weights(const torch::nn::Module& model, const std::string& path);

/// Loads a checkpoint into `model`. Checkpoints in Flux's original
/// single-file layout (`double_blocks.N.img_attn.qkv`, ...) are detected from
/// their keys and mapped to diffusers' names. A missing, unexpected or
/// mis-shaped tensor is refused, naming it; nothing is copied then.
void load_weights(torch::nn::Module& model, const std::string& path);
void load_weights(torch::nn::Module& model, std::map<std::string, at::Tensor> tensors,
                  const std::string& source);

/// Flux's original names to diffusers' (fused qkv and linear1 split,
/// final scale/shift swapped); other keys are kept.
std::map<std::string, at::Tensor> convert_flux_original(
    const std::map<std::string, at::Tensor>& in);
bool is_flux_original_layout(const std::map<std::string, at::Tensor>& tensors);

}  // namespace spdit::models
