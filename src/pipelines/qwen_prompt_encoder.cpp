#include "spdit/pipelines/qwen_prompt_encoder.h"

#include <stdexcept>

#include "spdit/pipelines/qwen_image_pipeline.h"
#include "spdit/pipelines/qwen_image_prompt_encoder.h"

namespace spdit::pipelines {

namespace {

// Qwen2.5-VL's text side as the pipeline calls it: encode_prompt with its
// default max_sequence_length (512).
class Qwen25VlPromptEncoder final : public QwenPromptEncoder {
 public:
  explicit Qwen25VlPromptEncoder(QwenImagePromptEncoder encoder) : encoder_(std::move(encoder)) {}
  QwenPromptEmbeds encode(const std::string& prompt) override {
    auto e = encoder_.encode_prompt({prompt});
    return {e.embeds, e.mask};
  }

 private:
  QwenImagePromptEncoder encoder_;
};

}  // namespace

std::unique_ptr<QwenPromptEncoder> make_qwen_prompt_encoder(const QwenImageFiles& files) {
  if (files.text_encoder.empty() || files.tokenizer.empty()) return nullptr;
  return std::make_unique<Qwen25VlPromptEncoder>(
      QwenImagePromptEncoder::load(files.tokenizer, files.text_encoder));
}

std::unique_ptr<QwenPromptEncoder> require_qwen_prompt_encoder(const QwenImageFiles& files) {
  auto encoder = make_qwen_prompt_encoder(files);
  if (!encoder) {
    throw std::invalid_argument(
        "spdit: '" + files.root +
        "' is a Qwen-Image folder without text_encoder/ and tokenizer/ (Qwen2.5-VL): "
        "give the prompt as embeddings instead, --prompt-embeds FILE (a .safetensors file "
        "holding prompt_embeds (1, L, 3584 for Qwen-Image: the transformer's "
        "joint_attention_dim) and optionally prompt_embeds_mask, negative_prompt_embeds, "
        "negative_prompt_embeds_mask, as diffusers' QwenImagePipeline.encode_prompt returns them)");
  }
  return encoder;
}

QwenPromptEmbeds keep_masked_tokens(const QwenPromptEmbeds& p, const std::string& what) {
  const auto& e = p.embeds;
  if (!e.defined() || e.dim() != 3 || e.size(0) != 1) {
    throw std::invalid_argument("spdit: " + what + " must be (1, L, text_dim); " +
                                (e.defined() ? std::string(c10::str(e.sizes())) : "nothing") +
                                " given");
  }
  if (!p.mask.defined()) return {e, at::ones({1, e.size(1)}, at::kLong)};
  if (p.mask.dim() != 2 || p.mask.size(0) != 1 || p.mask.size(1) != e.size(1)) {
    throw std::invalid_argument("spdit: " + what + "_mask must be (1, " +
                                std::to_string(e.size(1)) + ") like " + what + "; " +
                                std::string(c10::str(p.mask.sizes())) + " given");
  }
  const auto keep = p.mask[0].to(at::kBool);
  const int64_t valid = keep.sum().item<int64_t>();
  if (valid == 0)
    throw std::invalid_argument("spdit: " + what + "_mask is all zeros: no token is left");
  if (valid == e.size(1)) return {e, at::ones({1, valid}, at::kLong)};
  return {e[0].index_select(0, keep.nonzero().squeeze(1)).unsqueeze(0).contiguous(),
          at::ones({1, valid}, at::kLong)};
}

}  // namespace spdit::pipelines
