#include "qwen_encode.h"

#include <iostream>
#include <map>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/qwen_image_prompt_encoder.h"

namespace spdit::cli {

bool is_qwen_image_text_folder(const std::string& model_dir) {
  return pipelines::QwenImagePromptEncoder::is_model_dir(model_dir);
}

int encode_qwen_image_prompt(const std::string& model_dir, const std::string& prompt,
                             const std::string* negative, const std::string& out) {
  auto encoder = pipelines::QwenImagePromptEncoder::from_model_dir(model_dir);
  std::map<std::string, at::Tensor> tensors;
  auto add = [&](const std::string& prefix, const std::string& text) {
    const auto e = encoder.encode_prompt({text});  // as __call__: at most 512 tokens
    tensors[prefix + "prompt_embeds"] = e.embeds.contiguous();
    tensors[prefix + "prompt_embeds_mask"] = e.mask.contiguous();
    std::cout << prefix << "prompt_embeds " << e.embeds.sizes() << " ";
  };
  std::cout << "wrote " << out << ": ";
  add("", prompt);
  if (negative) add("negative_", *negative);
  checkpoints::write_safetensors(out, tensors);
  std::cout << "(with their masks)" << std::endl;
  return 0;
}

}  // namespace spdit::cli
