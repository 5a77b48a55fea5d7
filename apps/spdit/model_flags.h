#pragma once
// The flags that choose a reference model and its size, shared by `run` and
// `explain` so the two always accept the same values.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/precision.h"
#include "validators.h"

namespace spdit::cli {

inline void add_model_flags(CLI::App* cmd, std::string& model, std::string& preset, int64_t& height,
                            int64_t& width, int64_t& frames, int64_t& text_len,
                            std::string& dtype) {
  cmd->add_option("--model", model, "flux | wan | qwen-image")
      ->check(CLI::IsMember({"flux", "wan", "qwen-image", "qwen_image"}))
      ->capture_default_str();
  cmd->add_option("--preset", preset, "tiny | small | full")
      ->check(CLI::IsMember({"tiny", "small", "full"}))
      ->capture_default_str();
  cmd->add_option("--height", height, "Image height in pixels")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--width", width, "Image width in pixels")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--frames", frames, "Video frames (wan only), 4k+1")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--text-len", text_len, "Text tokens")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--dtype", dtype,
                  "bf16 | fp16 | fp32: the dtype the model computes in (default: as --weights "
                  "stores it; fp32 "
                  "for random weights)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
}

/// --dtype, or the checkpoint's stored dtype, or fp32.
inline at::ScalarType resolve_dtype(const std::string& flag, const checkpoints::Identified* found) {
  if (!flag.empty()) return models::parse_dtype(flag);
  return found ? found->stored_dtype : at::kFloat;
}

}  // namespace spdit::cli
