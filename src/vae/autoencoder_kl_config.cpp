#include "spdit/vae/autoencoder_kl_config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace spdit::vae {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("spdit: " + source + ": " + what);
}

// diffusers' AutoencoderKL.__init__ defaults stand for absent fields, as
// diffusers itself reads the file.
int64_t get_int(const nlohmann::json& j, const char* key, int64_t fallback,
                const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer())
    fail(source, std::string("field '") + key + "' should be an integer, not " + j[key].dump());
  return j[key].get<int64_t>();
}

double get_number(const nlohmann::json& j, const char* key, double fallback,
                  const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number())
    fail(source, std::string("field '") + key + "' should be a number, not " + j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean())
    fail(source, std::string("field '") + key + "' should be true or false, not " + j[key].dump());
  return j[key].get<bool>();
}

void require_all(const nlohmann::json& j, const char* key, const char* type,
                 const std::string& source) {
  if (!j.contains(key)) return;
  const auto& a = j[key];
  if (!a.is_array())
    fail(source, std::string("field '") + key + "' should be a list, not " + a.dump());
  for (const auto& v : a) {
    if (v != type) {
      fail(source, std::string("field '") + key + "' lists " + v.dump() + "; only " + type +
                       " (FLUX.1's autoencoder) is supported");
    }
  }
}

}  // namespace

AutoencoderKLConfig AutoencoderKLConfig::flux() { return AutoencoderKLConfig{}; }

AutoencoderKLConfig AutoencoderKLConfig::tiny() {
  AutoencoderKLConfig c;
  c.block_out_channels = {32, 64};
  c.layers_per_block = 1;
  return c;
}

int64_t AutoencoderKLConfig::vae_scale_factor() const {
  return int64_t{1} << (block_out_channels.size() - 1);
}

void AutoencoderKLConfig::validate(const std::string& source) const {
  if (block_out_channels.empty() || block_out_channels.size() > 8) {
    fail(source, "block_out_channels should list 1 to 8 widths, not " +
                     std::to_string(block_out_channels.size()));
  }
  if (in_channels <= 0 || out_channels <= 0 || latent_channels <= 0 || layers_per_block <= 0 ||
      norm_num_groups <= 0) {
    fail(source,
         "in_channels, out_channels, latent_channels, layers_per_block and norm_num_groups must be "
         "positive");
  }
  for (int64_t c : block_out_channels) {
    if (c <= 0 || c % norm_num_groups != 0) {
      fail(source, "block_out_channels holds " + std::to_string(c) + ", which norm_num_groups " +
                       std::to_string(norm_num_groups) + " does not divide (GroupNorm needs it)");
    }
  }
  if (!(scaling_factor > 0)) fail(source, "scaling_factor must be positive");
}

AutoencoderKLConfig AutoencoderKLConfig::from_json(const std::string& text,
                                                   const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(source, "should hold a JSON object");
  if (j.contains("_class_name") && j["_class_name"] != "AutoencoderKL") {
    fail(source, "is the config of " + j["_class_name"].dump() +
                     ", not of an AutoencoderKL (FLUX.1's vae/)");
  }
  if (j.contains("act_fn") && j["act_fn"] != "silu")
    fail(source, "act_fn " + j["act_fn"].dump() + " is not silu");
  require_all(j, "down_block_types", "DownEncoderBlock2D", source);
  require_all(j, "up_block_types", "UpDecoderBlock2D", source);
  // diffusers builds quant convs unless told not to; FLUX.1's config says false.
  if (get_bool(j, "use_quant_conv", true, source) ||
      get_bool(j, "use_post_quant_conv", true, source)) {
    fail(source,
         "asks for quant_conv / post_quant_conv (use_quant_conv and use_post_quant_conv absent or "
         "true); "
         "FLUX.1's autoencoder has neither");
  }
  if (!j.contains("shift_factor") || j["shift_factor"].is_null()) {
    fail(source,
         "has no shift_factor; FLUX.1's pipeline needs it (0.1159 for FLUX.1's autoencoder)");
  }
  AutoencoderKLConfig c;
  c.in_channels = get_int(j, "in_channels", 3, source);
  c.out_channels = get_int(j, "out_channels", 3, source);
  c.latent_channels = get_int(j, "latent_channels", 4, source);
  c.layers_per_block = get_int(j, "layers_per_block", 1, source);
  c.norm_num_groups = get_int(j, "norm_num_groups", 32, source);
  c.mid_block_add_attention = get_bool(j, "mid_block_add_attention", true, source);
  c.scaling_factor = get_number(j, "scaling_factor", 0.18215, source);
  c.shift_factor = get_number(j, "shift_factor", 0.0, source);
  if (j.contains("block_out_channels")) {
    const auto& b = j["block_out_channels"];
    if (!b.is_array())
      fail(source, "field 'block_out_channels' should be a list of integers, not " + b.dump());
    c.block_out_channels.clear();
    for (const auto& v : b) {
      if (!v.is_number_integer())
        fail(source, "field 'block_out_channels' should be a list of integers, not " + b.dump());
      c.block_out_channels.push_back(v.get<int64_t>());
    }
  } else {
    c.block_out_channels = {64};
  }
  for (const char* key : {"down_block_types", "up_block_types"}) {
    if (j.contains(key) && j[key].size() != c.block_out_channels.size()) {
      fail(source, std::string("field '") + key + "' lists " + std::to_string(j[key].size()) +
                       " blocks but block_out_channels " +
                       std::to_string(c.block_out_channels.size()));
    }
  }
  c.validate(source);
  return c;
}

std::string AutoencoderKLConfig::to_json() const {
  const auto levels = block_out_channels.size();
  nlohmann::json j = {
      {"_class_name", "AutoencoderKL"},
      {"act_fn", "silu"},
      {"block_out_channels", block_out_channels},
      {"down_block_types", std::vector<std::string>(levels, "DownEncoderBlock2D")},
      {"force_upcast", true},
      {"in_channels", in_channels},
      {"latent_channels", latent_channels},
      {"latents_mean", nullptr},
      {"latents_std", nullptr},
      {"layers_per_block", layers_per_block},
      {"mid_block_add_attention", mid_block_add_attention},
      {"norm_num_groups", norm_num_groups},
      {"out_channels", out_channels},
      {"sample_size", 1024},
      {"scaling_factor", scaling_factor},
      {"shift_factor", shift_factor},
      {"up_block_types", std::vector<std::string>(levels, "UpDecoderBlock2D")},
      {"use_post_quant_conv", false},
      {"use_quant_conv", false},
  };
  return j.dump(2) + "\n";
}

}  // namespace spdit::vae
