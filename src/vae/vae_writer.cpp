#include "spdit/vae/vae_writer.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/vae/autoencoder_kl.h"

namespace spdit::vae {
namespace {

void write_folder(const std::string& dir, const AutoencoderKLConfig& config,
                  const std::map<std::string, at::Tensor>& tensors, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("spdit: cannot create the folder '" + dir + "': " + ec.message());
  checkpoints::write_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors,
                                 {{"format", "pt"}, {"spdit", what}});
  std::ofstream f(dir + "/config.json");
  f << config.to_json();
  if (!f) throw std::runtime_error("spdit: cannot write '" + dir + "/config.json'");
}

}  // namespace

void write_random_autoencoder(const std::string& dir, const AutoencoderKLConfig& config,
                              uint64_t seed, at::ScalarType dtype) {
  config.validate("the autoencoder to write");
  // The model's own names and shapes (lazy pages: nothing allocated).
  std::map<std::string, std::vector<int64_t>> shapes;  // sorted: a seed gives one file
  for (const auto& p : AutoencoderKL(config, at::kFloat)->named_parameters(true))
    shapes[p.key()] = p.value().sizes().vec();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, shape] : shapes) {
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    at::Tensor v = at::randn(shape, gen, at::kFloat);
    if (shape.size() > 1) {
      int64_t fan_in = 1;
      for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
      v.div_(std::sqrt(static_cast<double>(fan_in)));
    } else {
      v.mul_(0.1);
      if (!is_bias) v.add_(1.0);  // a norm's weight
    }
    tensors[name] = v.to(dtype);
  }
  write_folder(dir, config, tensors, "random-weight AutoencoderKL, seed " + std::to_string(seed));
}

void write_autoencoder(const std::string& dir, AutoencoderKL& model,
                       const AutoencoderKLConfig& config, at::ScalarType dtype) {
  config.validate("the autoencoder to write");
  std::map<std::string, at::Tensor> tensors;
  for (const auto& p : model->named_parameters(true))
    tensors[p.key()] = p.value().detach().to(dtype).contiguous();
  write_folder(dir, config, tensors, "trained AutoencoderKL");
}

}  // namespace spdit::vae
