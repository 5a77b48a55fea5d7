#include "spdit/vae/wan_vae_names.h"

#include <map>
#include <stdexcept>

namespace spdit::vae {
namespace {

// A residual block's tensors: Wan's Sequential indices -> diffusers' names.
const std::map<std::string, std::string> kResidual = {
    {"residual.0.gamma", "norm1.gamma"},         {"residual.2.weight", "conv1.weight"},
    {"residual.2.bias", "conv1.bias"},           {"residual.3.gamma", "norm2.gamma"},
    {"residual.6.weight", "conv2.weight"},       {"residual.6.bias", "conv2.bias"},
    {"shortcut.weight", "conv_shortcut.weight"}, {"shortcut.bias", "conv_shortcut.bias"}};

bool starts(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// "12.rest" -> (12, "rest"); false when there is no number then a dot.
bool split_index(const std::string& s, int64_t* index, std::string* rest) {
  const auto dot = s.find('.');
  if (dot == 0 || dot == std::string::npos) return false;
  for (size_t i = 0; i < dot; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  *index = std::stoll(s.substr(0, dot));
  *rest = s.substr(dot + 1);
  return true;
}

std::string residual_to_diffusers(const std::string& leaf) {
  auto it = kResidual.find(leaf);
  return it == kResidual.end() ? "" : it->second;
}

std::string residual_to_wan(const std::string& leaf) {
  for (const auto& [wan, diffusers] : kResidual) {
    if (diffusers == leaf) return wan;
  }
  return "";
}

}  // namespace

std::string detect_wan_vae_layout(const std::vector<std::string>& names, const std::string& file) {
  for (const auto& n : names) {
    if (starts(n, "decoder.mid_block.")) return "diffusers";
    if (starts(n, "decoder.middle.")) return "wan-original";
  }
  std::string some;
  for (size_t i = 0; i < names.size() && i < 4; ++i) some += (i ? ", " : "") + names[i];
  throw std::runtime_error("spdit: '" + file +
                           "' holds no Wan2.1 autoencoder (neither decoder.mid_block.* as "
                           "diffusers names it nor decoder.middle.* as Wan's Wan2.1_VAE.pth does); "
                           "it holds " +
                           std::to_string(names.size()) + " tensors such as " +
                           (some.empty() ? "none" : some));
}

std::string wan_vae_name_to_diffusers(const std::string& name, const WanVaeConfig& config) {
  if (starts(name, "conv1.")) return "quant_conv." + name.substr(6);
  if (starts(name, "conv2.")) return "post_quant_conv." + name.substr(6);
  for (const std::string side : {"encoder", "decoder"}) {
    const std::string p = side + ".";
    if (!starts(name, p)) continue;
    const std::string rest = name.substr(p.size());
    if (starts(rest, "conv1.")) return p + "conv_in." + rest.substr(6);
    if (rest == "head.0.gamma") return p + "norm_out.gamma";
    if (starts(rest, "head.2.")) return p + "conv_out." + rest.substr(7);
    int64_t i = 0;
    std::string leaf;
    if (starts(rest, "middle.") && split_index(rest.substr(7), &i, &leaf)) {
      if (i == 1) return p + "mid_block.attentions.0." + leaf;
      const std::string mapped = residual_to_diffusers(leaf);
      if ((i != 0 && i != 2) || mapped.empty()) return "";
      return p + "mid_block.resnets." + std::to_string(i / 2) + "." + mapped;
    }
    if (side == "encoder" && starts(rest, "downsamples.") &&
        split_index(rest.substr(12), &i, &leaf)) {
      // A flat list in both layouts: residual blocks and resamples in order.
      const std::string mapped = residual_to_diffusers(leaf);
      return p + "down_blocks." + std::to_string(i) + "." + (mapped.empty() ? leaf : mapped);
    }
    if (side == "decoder" && starts(rest, "upsamples.") &&
        split_index(rest.substr(10), &i, &leaf)) {
      // Per level: num_res_blocks + 1 residual blocks, then a resample.
      const int64_t per = config.num_res_blocks + 2;
      const int64_t level = i / per, j = i % per;
      if (level >= static_cast<int64_t>(config.dim_mult.size())) return "";
      if (j <= config.num_res_blocks) {
        const std::string mapped = residual_to_diffusers(leaf);
        if (mapped.empty()) return "";
        return p + "up_blocks." + std::to_string(level) + ".resnets." + std::to_string(j) + "." +
               mapped;
      }
      return p + "up_blocks." + std::to_string(level) + ".upsamplers.0." + leaf;
    }
  }
  return "";
}

std::string diffusers_vae_name_to_wan(const std::string& name, const WanVaeConfig& config) {
  if (starts(name, "quant_conv.")) return "conv1." + name.substr(11);
  if (starts(name, "post_quant_conv.")) return "conv2." + name.substr(16);
  for (const std::string side : {"encoder", "decoder"}) {
    const std::string p = side + ".";
    if (!starts(name, p)) continue;
    const std::string rest = name.substr(p.size());
    if (starts(rest, "conv_in.")) return p + "conv1." + rest.substr(8);
    if (rest == "norm_out.gamma") return p + "head.0.gamma";
    if (starts(rest, "conv_out.")) return p + "head.2." + rest.substr(9);
    int64_t i = 0, j = 0;
    std::string leaf, tail;
    if (starts(rest, "mid_block.attentions.0.")) return p + "middle.1." + rest.substr(23);
    if (starts(rest, "mid_block.resnets.") && split_index(rest.substr(18), &i, &leaf)) {
      const std::string mapped = residual_to_wan(leaf);
      return mapped.empty() ? "" : p + "middle." + std::to_string(2 * i) + "." + mapped;
    }
    if (starts(rest, "down_blocks.") && split_index(rest.substr(12), &i, &leaf)) {
      const std::string mapped = residual_to_wan(leaf);
      return p + "downsamples." + std::to_string(i) + "." + (mapped.empty() ? leaf : mapped);
    }
    if (starts(rest, "up_blocks.") && split_index(rest.substr(10), &i, &tail)) {
      const int64_t per = config.num_res_blocks + 2;
      if (starts(tail, "resnets.") && split_index(tail.substr(8), &j, &leaf)) {
        const std::string mapped = residual_to_wan(leaf);
        return mapped.empty() ? "" : p + "upsamples." + std::to_string(i * per + j) + "." + mapped;
      }
      if (starts(tail, "upsamplers.0."))
        return p + "upsamples." + std::to_string(i * per + per - 1) + "." + tail.substr(13);
    }
  }
  return "";
}

}  // namespace spdit::vae
