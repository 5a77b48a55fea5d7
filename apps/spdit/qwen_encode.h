#pragma once
// `spdit encode` on a Qwen-Image folder: the prompt (and a negative prompt)
// through Qwen2.5-VL's text model as the pipeline takes it.
#include <string>

namespace spdit::cli {

/// Whether `model_dir` has a Qwen2.5-VL text_encoder/ (Qwen-Image's layout).
bool is_qwen_image_text_folder(const std::string& model_dir);

/// Writes prompt_embeds (1, L, hidden) and prompt_embeds_mask (1, L) int64,
/// and the negative_* pair when `negative` is given, to `out` (safetensors).
int encode_qwen_image_prompt(const std::string& model_dir, const std::string& prompt,
                             const std::string* negative, const std::string& out);

}  // namespace spdit::cli
