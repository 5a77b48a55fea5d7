#pragma once
/// The text encoders from the folders a diffusers download holds:
/// config.json (the dimensions) and the weights (one model.safetensors, or
/// shards with model.safetensors.index.json), memory-mapped. A tensor whose
/// dtype is the one the model computes in is used in place (a view of the
/// file's pages, shared by the ranks of one machine); others are converted.
///
///   auto clip = load_clip_text_model("FLUX.1-dev/text_encoder");    // bf16 weights, in place
///   auto t5 = load_t5_encoder("FLUX.1-dev/text_encoder_2");         // 2 shards, in place
///   auto t5_fp32 = load_t5_encoder(dir, TextEncoderLoadOptions().dtype(at::kFloat));
#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "spdit/text/clip_text_model.h"
#include "spdit/text/qwen2_text_model.h"
#include "spdit/text/t5_encoder.h"

namespace spdit::text {

struct TextEncoderLoadOptions {
  /// The dtype to compute in; unset: the weights' own (BF16 or F32; F16 is
  /// computed in F32, see compute_dtype_for).
  TextEncoderLoadOptions& dtype(at::ScalarType t) {
    dtype_ = t;
    return *this;
  }
  std::optional<at::ScalarType> dtype_;
};

/// A CLIPTextModel (text_encoder/ of Flux). Throws naming the folder, the
/// file and the tensor when config.json or a tensor is missing or a shape
/// disagrees with config.json.
ClipTextModel load_clip_text_model(const std::string& folder,
                                   const TextEncoderLoadOptions& options = {});

/// A T5EncoderModel (text_encoder_2/ of Flux). The token table is read from
/// `shared.weight` or, where a file has only that, `encoder.embed_tokens.weight`.
T5EncoderModel load_t5_encoder(const std::string& folder,
                               const TextEncoderLoadOptions& options = {});

/// umT5's encoder from Wan's own file (models_t5_umt5-xxl-enc-bf16.pth, a
/// PyTorch zip checkpoint in Wan's names: token_embedding, blocks.N.attn.q,
/// blocks.N.ffn.gate.0, blocks.N.pos_embedding.embedding, norm, ...). It has
/// no config: the dimensions come from the shapes (umT5-XXL's 32 buckets,
/// max distance 128, eps 1e-6). Throws naming the file and the tensor when
/// one is missing or of the wrong shape.
T5EncoderModel load_umt5_encoder_wan_original(const std::string& file,
                                              const TextEncoderLoadOptions& options = {});

/// Wan's name of a umT5 parameter named as transformers names it
/// (encoder.block.3.layer.1.DenseReluDense.wi_0.weight -> blocks.3.ffn.gate.0.weight).
std::string umt5_wan_original_name(const std::string& transformers_name);

/// Writes `model` as a folder the loaders above read: `config_json` (a
/// config's to_json()) as config.json and every parameter, in `dtype`, as
/// model.safetensors. For random-weight model folders (`spdit new-model`):
///
///   text::ClipTextModel clip(config);                  // random init
///   save_text_encoder(*clip, config.to_json(), "tiny/text_encoder", at::kFloat);
void save_text_encoder(const torch::nn::Module& model, const std::string& config_json,
                       const std::string& folder, at::ScalarType dtype);

/// The text model of a Qwen2_5_VLForConditionalGeneration folder (text_encoder/
/// of Qwen-Image: config.json and shards). Reads the language model's tensors
/// in either naming transformers has saved (model.language_model.layers.N...
/// since 4.52, model.layers.N... before); the vision tower (visual.* /
/// model.visual.*) and lm_head are never read (the file maps them, no page is
/// touched). Throws naming the folder when neither naming is there.
Qwen2TextModel load_qwen2_text_model(const std::string& folder,
                                     const TextEncoderLoadOptions& options = {});

/// Writes `model` as a Qwen2.5-VL text_encoder/ folder that load_qwen2_text_model
/// reads: config.json and model.safetensors in transformers' current names
/// (model.language_model.*), in `dtype`. For random-weight model folders.
void save_qwen2_text_encoder(const Qwen2TextModelImpl& model, const std::string& folder,
                             at::ScalarType dtype);

}  // namespace spdit::text
