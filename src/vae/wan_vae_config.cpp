#include "spdit/vae/wan_vae_config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace spdit::vae {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("spdit: " + source + ": " + what);
}

// Wan's WanVAE class (wan/modules/vae.py) and diffusers' AutoencoderKLWan
// defaults.
const std::vector<double> kWan21Mean = {-0.7571, -0.7089, -0.9113, 0.1075,  -0.1745, 0.9653,
                                        -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                        -0.1922, -0.9497, 0.2503,  -0.2921};
const std::vector<double> kWan21Std = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                       2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                       1.6382, 1.1253, 2.8251, 1.9160};

// Absent or null fields take diffusers' AutoencoderKLWan defaults, as diffusers
// reads the file.
int64_t get_int(const nlohmann::json& j, const char* key, int64_t fallback,
                const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer())
    fail(source, std::string("field '") + key + "' should be an integer, not " + j[key].dump());
  return j[key].get<int64_t>();
}

template <typename T>
std::vector<T> get_list(const nlohmann::json& j, const char* key, std::vector<T> fallback,
                        const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& a = j[key];
  if (!a.is_array())
    fail(source, std::string("field '") + key + "' should be a list, not " + a.dump());
  std::vector<T> out;
  for (const auto& v : a) {
    const bool ok = std::is_same_v<T, bool>      ? v.is_boolean()
                    : std::is_same_v<T, int64_t> ? v.is_number_integer()
                                                 : v.is_number();
    if (!ok)
      fail(source, std::string("field '") + key + "' holds " + v.dump() + ", of the wrong type");
    out.push_back(v.get<T>());
  }
  return out;
}

}  // namespace

WanVaeConfig WanVaeConfig::wan21() {
  WanVaeConfig c;
  c.latents_mean = kWan21Mean;
  c.latents_std = kWan21Std;
  return c;
}

WanVaeConfig WanVaeConfig::tiny() {
  WanVaeConfig c = wan21();
  c.base_dim = 8;
  c.num_res_blocks = 1;
  return c;
}

int64_t WanVaeConfig::spatial_scale_factor() const { return int64_t{1} << (dim_mult.size() - 1); }

int64_t WanVaeConfig::temporal_scale_factor() const {
  int64_t f = 1;
  for (bool halves : temperal_downsample) f *= halves ? 2 : 1;
  return f;
}

int64_t WanVaeConfig::frames_for_latent_frames(int64_t latent_frames) const {
  return 1 + temporal_scale_factor() * (latent_frames - 1);
}

int64_t WanVaeConfig::latent_frames_for_frames(int64_t frames) const {
  const int64_t f = temporal_scale_factor();
  if (frames < 1 || (frames - 1) % f != 0) {
    throw std::invalid_argument("spdit: the Wan autoencoder takes 1 + " + std::to_string(f) +
                                "k frames (1, " + std::to_string(1 + f) + ", " +
                                std::to_string(1 + 2 * f) + ", ...), not " +
                                std::to_string(frames));
  }
  return 1 + (frames - 1) / f;
}

void WanVaeConfig::validate(const std::string& source) const {
  if (base_dim < 1) fail(source, "base_dim must be positive, not " + std::to_string(base_dim));
  if (z_dim < 1) fail(source, "z_dim must be positive, not " + std::to_string(z_dim));
  if (num_res_blocks < 1)
    fail(source, "num_res_blocks must be at least 1, not " + std::to_string(num_res_blocks));
  if (dim_mult.empty()) fail(source, "dim_mult lists no level");
  for (int64_t m : dim_mult) {
    if (m < 1)
      fail(source, "dim_mult holds " + std::to_string(m) + "; every multiplier must be positive");
  }
  if (temperal_downsample.size() + 1 != dim_mult.size()) {
    fail(source, "temperal_downsample has " + std::to_string(temperal_downsample.size()) +
                     " flags; it needs one per level but the last (" +
                     std::to_string(dim_mult.size() - 1) + ")");
  }
  // The decoder's levels after the first take half the channels the level
  // before upsampled to (Wan2.1's Resample halves them).
  for (size_t i = 1; i < dim_mult.size(); ++i) {
    if ((base_dim * dim_mult[dim_mult.size() - i]) % 2 != 0) {
      fail(source,
           "base_dim x dim_mult must be even at every level the "
           "decoder upsamples");
    }
  }
  if (latents_mean.size() != static_cast<size_t>(z_dim) ||
      latents_std.size() != static_cast<size_t>(z_dim)) {
    fail(source, "latents_mean and latents_std need one value per latent channel (" +
                     std::to_string(z_dim) + "), not " + std::to_string(latents_mean.size()) +
                     " and " + std::to_string(latents_std.size()));
  }
  for (double s : latents_std) {
    if (!(s > 0))
      fail(source, "latents_std holds " + std::to_string(s) + "; every std must be positive");
  }
}

WanVaeConfig WanVaeConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(source, "not a JSON object");
  // Qwen-Image's AutoencoderKLQwenImage is the same network under another name.
  if (j.contains("_class_name") && j["_class_name"] != "AutoencoderKLWan" &&
      j["_class_name"] != "AutoencoderKLQwenImage") {
    fail(source, "is the config of " + j["_class_name"].dump() +
                     ", not of AutoencoderKLWan (Wan2.1's autoencoder) or "
                     "AutoencoderKLQwenImage");
  }
  if (j.value("is_residual", false) == true) {
    fail(source,
         "is_residual is true: that is Wan2.2's autoencoder, which "
         "spdit does not build");
  }
  if (j.contains("patch_size") && !j["patch_size"].is_null() && j["patch_size"] != 1) {
    fail(source,
         "patch_size " + j["patch_size"].dump() + " (Wan2.2's autoencoder) is not supported");
  }
  if (j.contains("attn_scales") && !(j["attn_scales"].is_array() && j["attn_scales"].empty())) {
    fail(source, "attn_scales " + j["attn_scales"].dump() +
                     ": Wan2.1's autoencoder has none, and spdit builds none");
  }
  for (const char* key : {"in_channels", "out_channels"}) {
    if (get_int(j, key, 3, source) != 3) fail(source, std::string(key) + " must be 3 (RGB)");
  }
  WanVaeConfig c = wan21();
  c.base_dim = get_int(j, "base_dim", c.base_dim, source);
  if (get_int(j, "decoder_base_dim", c.base_dim, source) != c.base_dim) {
    fail(source,
         "decoder_base_dim differs from base_dim (Wan2.2's "
         "autoencoder); not supported");
  }
  c.z_dim = get_int(j, "z_dim", c.z_dim, source);
  c.dim_mult = get_list<int64_t>(j, "dim_mult", c.dim_mult, source);
  c.num_res_blocks = get_int(j, "num_res_blocks", c.num_res_blocks, source);
  c.temperal_downsample = get_list<bool>(j, "temperal_downsample", c.temperal_downsample, source);
  c.latents_mean = get_list<double>(j, "latents_mean", c.latents_mean, source);
  c.latents_std = get_list<double>(j, "latents_std", c.latents_std, source);
  c.validate(source);
  return c;
}

std::string WanVaeConfig::to_json() const {
  nlohmann::json j;
  j["_class_name"] = "AutoencoderKLWan";
  j["_diffusers_version"] = "0.33.0";
  j["attn_scales"] = nlohmann::json::array();
  j["base_dim"] = base_dim;
  j["dim_mult"] = dim_mult;
  j["dropout"] = 0.0;
  j["latents_mean"] = latents_mean;
  j["latents_std"] = latents_std;
  j["num_res_blocks"] = num_res_blocks;
  j["temperal_downsample"] = temperal_downsample;
  j["z_dim"] = z_dim;
  return j.dump(2) + "\n";
}

}  // namespace spdit::vae
