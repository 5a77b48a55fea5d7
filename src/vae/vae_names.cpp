#include "spdit/vae/vae_names.h"

#include <regex>
#include <stdexcept>

namespace spdit::vae {
namespace {

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

}  // namespace

VaeLayout detect_vae_layout(const std::vector<std::string>& names, const std::string& file) {
  // Single-file bundles carry the autoencoder under a prefix (ComfyUI's
  // "vae.", Stable Diffusion's "first_stage_model.").
  for (const std::string prefix : {"", "vae.", "first_stage_model."}) {
    for (const auto& n : names) {
      if (n == prefix + "decoder.mid_block.resnets.0.conv1.weight") return {"diffusers", prefix};
      if (n == prefix + "decoder.mid.block_1.conv1.weight") return {"bfl", prefix};
    }
  }
  std::string some;
  for (size_t i = 0; i < names.size() && i < 4; ++i) some += (i ? ", " : "") + names[i];
  throw std::runtime_error(
      "spdit: '" + file +
      "' holds no autoencoder decoder (neither diffusers' "
      "'decoder.mid_block.resnets.0.conv1.weight' nor Black Forest Labs' "
      "'decoder.mid.block_1.conv1.weight'); its tensors: " +
      (some.empty() ? std::string("none") : some) +
      (names.size() > 4 ? ", ... (" + std::to_string(names.size()) + " in all)" : ""));
}

std::string bfl_vae_name_to_diffusers(const std::string& name, int64_t levels) {
  // Written from diffusers' convert_ldm_vae_checkpoint (single_file_utils.py)
  // and BFL's autoencoder.py; one rule per structure, the first match wins.
  struct Rule {
    std::regex pattern;
    std::string replacement;
    bool reverse_level;  // $1 is a decoder level to count from the other end
  };
  static const std::vector<Rule> rules = {
      {std::regex(R"(^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$)"), "$1.$2.$3", false},
      {std::regex(R"(^(encoder|decoder)\.norm_out\.(weight|bias)$)"), "$1.conv_norm_out.$2", false},
      {std::regex(R"(^(encoder|decoder)\.mid\.block_1\.(.+)$)"), "$1.mid_block.resnets.0.$2",
       false},
      {std::regex(R"(^(encoder|decoder)\.mid\.block_2\.(.+)$)"), "$1.mid_block.resnets.1.$2",
       false},
      {std::regex(R"(^(encoder|decoder)\.mid\.attn_1\.norm\.(weight|bias)$)"),
       "$1.mid_block.attentions.0.group_norm.$2", false},
      {std::regex(R"(^(encoder|decoder)\.mid\.attn_1\.(q|k|v)\.(weight|bias)$)"),
       "$1.mid_block.attentions.0.to_$2.$3", false},
      {std::regex(R"(^(encoder|decoder)\.mid\.attn_1\.proj_out\.(weight|bias)$)"),
       "$1.mid_block.attentions.0.to_out.0.$2", false},
      {std::regex(R"(^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$)"),
       "encoder.down_blocks.$1.resnets.$2.$3", false},
      {std::regex(R"(^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$)"),
       "encoder.down_blocks.$1.downsamplers.0.conv.$2", false},
      {std::regex(R"(^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$)"),
       "decoder.up_blocks.#.resnets.$2.$3", true},
      {std::regex(R"(^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$)"),
       "decoder.up_blocks.#.upsamplers.0.conv.$2", true},
  };
  for (const auto& r : rules) {
    std::smatch m;
    if (!std::regex_match(name, m, r.pattern)) continue;
    std::string out = std::regex_replace(name, r.pattern, r.replacement);
    if (r.reverse_level) {
      const int64_t level = std::stoll(m[1].str());
      if (level >= levels) return "";
      out.replace(out.find('#'), 1, std::to_string(levels - 1 - level));
    }
    // Inside a resnet only the shortcut is named differently.
    const auto s = out.find(".nin_shortcut.");
    if (s != std::string::npos) out.replace(s, 14, ".conv_shortcut.");
    return out;
  }
  return "";
}

bool is_vae_attention_projection(const std::string& n) {
  return n.find(".mid_block.attentions.0.to_") != std::string::npos && ends_with(n, ".weight");
}

std::string diffusers_vae_name_to_bfl(const std::string& name, int64_t levels) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(^(encoder|decoder)\.conv_norm_out\.)"), "$1.norm_out."},
      {std::regex(R"(^(encoder|decoder)\.mid_block\.resnets\.0\.)"), "$1.mid.block_1."},
      {std::regex(R"(^(encoder|decoder)\.mid_block\.resnets\.1\.)"), "$1.mid.block_2."},
      {std::regex(R"(^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.)"),
       "$1.mid.attn_1.norm."},
      {std::regex(R"(^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.)"),
       "$1.mid.attn_1.$2."},
      {std::regex(R"(^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.)"),
       "$1.mid.attn_1.proj_out."},
      {std::regex(R"(^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.)"),
       "encoder.down.$1.block.$2."},
      {std::regex(R"(^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.)"),
       "encoder.down.$1.downsample.conv."},
  };
  std::string out = name;
  std::smatch m;
  static const std::regex up(R"(^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.)");
  if (std::regex_search(name, m, up)) {
    const int64_t level = levels - 1 - std::stoll(m[1].str());
    out = "decoder.up." + std::to_string(level) +
          (m[2] == "resnets" ? ".block." + m[3].str() + "." : std::string(".upsample.")) +
          m.suffix().str();
  } else {
    for (const auto& [pattern, replacement] : rules) {
      if (!std::regex_search(name, pattern)) continue;
      out = std::regex_replace(name, pattern, replacement, std::regex_constants::format_first_only);
      break;
    }
  }
  const auto s = out.find(".conv_shortcut.");
  if (s != std::string::npos) out.replace(s, 15, ".nin_shortcut.");
  return out;
}

}  // namespace spdit::vae
