// `spdit new-model`: a complete random-weight model folder in diffusers'
// layout, to try the whole pipeline without a download.
#include <iostream>

#include "commands.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/new_model.h"
#include "validators.h"

namespace spdit::cli {

void add_new_model_command(CLI::App& app, Action& action) {
  auto* cmd =
      app.add_subcommand("new-model", "Write a random-weight model folder in diffusers' layout");
  static pipelines::NewModelOptions o;
  static std::string out, dtype;
  cmd->add_option("--model", o.model, "flux | wan | qwen-image")
      ->check(CLI::IsMember({"flux", "wan", "qwen-image", "qwen_image"}))
      ->capture_default_str();
  cmd->add_option("--preset", o.preset, "tiny | small | full")
      ->check(CLI::IsMember({"tiny", "small", "full"}))
      ->capture_default_str();
  cmd->add_option("--variant", o.variant, "FLUX.1's dev or schnell (no guidance embedder, 4 steps)")
      ->check(CLI::IsMember({"dev", "schnell"}))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the weights")
      ->check(whole_number(0))
      ->capture_default_str();
  cmd->add_option("--dtype", dtype, "bf16 | fp16 | fp32 (default: as the model is published)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_option("--out", out, "The folder to write (new, or empty)")->required();
  cmd->callback([&action] {
    action = [] {
      if (!dtype.empty()) o.dtype = models::parse_dtype(dtype);
      auto parts = pipelines::write_new_model(out, o);
      std::cout << "wrote " << out << ":";
      for (const auto& p : parts) std::cout << " " << p << "/";
      std::cout << " (" << o.model << " " << o.preset << ", seed " << o.seed << ")" << std::endl;
      return 0;
    };
  });
}

}  // namespace spdit::cli
