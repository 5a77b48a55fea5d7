#pragma once
// Which model a checkpoint holds, in which published layout, at which size,
// and loading it into a model without copying. Layouts: Flux.1 as Black
// Forest Labs ship it (`double_blocks.N.img_attn.qkv`) or as diffusers
// (`transformer_blocks.N.attn.to_q`); Wan2.1 as Wan ships it
// (`blocks.N.self_attn.q`, `head.head`) or as diffusers; Qwen-Image as
// diffusers. Dimensions come from the checkpoint's config.json, else from
// its tensors' names and shapes.
//
//   auto ckpt = Checkpoint::open("Wan2.1-T2V-1.3B/");
//   auto found = identify(ckpt);                 // wan, wan-original, t2v-1.3B
//   auto model = build_skeleton(found);          // no weights allocated
//   load_checkpoint(*model, ckpt, found);        // the file's pages, in place
#include <memory>
#include <string>
#include <variant>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/hooks/hookable.h"
#include "spdit/models/pipeline.h"

namespace spdit::checkpoints {

struct Identified {
  std::string model;          // "flux", "wan", "qwen-image"
  std::string layout;         // "bfl", "diffusers", "wan-original"
  std::string variant;        // "dev", "schnell", "fill", "t2v-1.3B", "t2v-14B", ...
  std::string prefix;         // stripped from every name ("model.diffusion_model.")
  std::string config_source;  // "config.json (path)" or "tensor names and shapes"
  models::ModelConfig config;
  /// The floating dtype most of the checkpoint's bytes are stored in: the
  /// dtype the model runs in unless asked otherwise (`--dtype`).
  at::ScalarType stored_dtype = at::kFloat;
};

/// Detects model, layout and variant from the names, and the dimensions from
/// config.json or the shapes; checks they agree (heads x head_dim = hidden,
/// RoPE axes sum to head_dim). Throws naming what does not fit.
Identified identify(const Checkpoint& ckpt);

/// The model of `found`, built as a skeleton (no weight memory) when
/// `skeleton`, else initialised.
std::shared_ptr<HookableModule> build_model(const Identified& found, bool skeleton = true);

/// The checkpoint's tensors under the model's (diffusers') names: views of
/// the file (fused tensors split as views), except Flux's final modulation,
/// whose halves are swapped (a small copy).
std::map<std::string, at::Tensor> tensors_in_model_names(const Checkpoint& ckpt,
                                                         const Identified& found);

/// What loading would find: names the model needs that the checkpoint lacks,
/// names it holds that the model lacks, and shapes that differ.
struct Comparison {
  std::vector<std::string> missing, unexpected, mismatched;
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};
Comparison compare(const torch::nn::Module& model, const std::map<std::string, at::Tensor>& named);

/// Replaces every parameter and buffer of `model` with the checkpoint's
/// tensor, in the dtype the model running in `dtype` (Undefined: as stored)
/// gives it (precision.h:
/// `dtype`, or fp32 for the modules the model keeps in fp32): in place (a
/// view of the file's pages) where that is the stored dtype, else one
/// converted copy. Refuses, before changing anything, a checkpoint that does
/// not fit the model (naming the tensors).
void load_checkpoint(torch::nn::Module& model, const Checkpoint& ckpt, const Identified& found,
                     at::ScalarType dtype = at::ScalarType::Undefined);

/// load_checkpoint, except for the parameters named in `leave`: they become
/// unbacked pages (models::lazy_empty) of the dtype the model holds them in,
/// and their checkpoint tensors (views of the file, the stored dtype) are
/// returned by name, for a reader of slices (ShardedWeights) to fill from.
/// Checks the whole checkpoint first, as load_checkpoint does.
std::map<std::string, at::Tensor> load_checkpoint_leaving(torch::nn::Module& model,
                                                          const Checkpoint& ckpt,
                                                          const Identified& found,
                                                          at::ScalarType dtype,
                                                          const std::vector<std::string>& leave);

/// Bytes each process allocates to load the checkpoint in `dtype`: the
/// tensors converted; those used in place cost file pages, shared by the
/// ranks of a machine.
int64_t converted_bytes(const Checkpoint& ckpt, const Identified& found, at::ScalarType dtype);

/// The pipeline `spdit run` drives for this checkpoint: the model at the
/// checkpoint's dimensions computing in `dtype` (Undefined: as stored), its
/// weights the checkpoint's.
std::unique_ptr<models::Pipeline> make_pipeline(const Checkpoint& ckpt, const Identified& found,
                                                uint64_t seed,
                                                at::ScalarType dtype = at::ScalarType::Undefined);

/// The model's config.json as diffusers writes it (class name and the
/// fields identify() reads), for writing a model folder.
std::string diffusers_config_json(const models::ModelConfig& config);

/// Writes a diffusers `transformer/` folder: config.json and
/// diffusion_pytorch_model.safetensors holding `model`'s parameters in
/// `dtype`. identify() reads it back as the same configuration.
void write_transformer_folder(const std::string& dir, const models::ModelConfig& config,
                              const torch::nn::Module& model, at::ScalarType dtype);

/// Wan's original tensor name in diffusers' naming ("" for none).
std::string wan_original_to_diffusers(const std::string& name);

}  // namespace spdit::checkpoints
