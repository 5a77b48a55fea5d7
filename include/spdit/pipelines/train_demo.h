#pragma once
// `spdit train-demo`: trains the tiny FLUX.1 folder that spdit ships as its
// demo (models/shapes-demo), from a seed, on the CPU with LibTorch's autograd.
// The folder starts as `new-model --preset tiny` writes it; then
//   1. the autoencoder learns to reconstruct shape pictures (shapes_data.h),
//      and its config gets the latents' own shift and scaling factors;
//   2. the transformer learns flow matching on those latents, as FLUX.1 is
//      trained: x_t = (1 - t) x0 + t noise, predict noise - x0, t drawn
//      logit-normal and shifted as the scheduler shifts its sigmas.
// The text encoders and tokenizers stay as new-model wrote them (frozen,
// random): the transformer learns to read their output.
//
//   TrainDemoOptions o;  o.seed = 0;
//   TrainDemoReport r = train_demo_model("shapes-demo/", o);   // then: spdit
//   run --model-dir shapes-demo/
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace spdit::pipelines {

struct TrainDemoOptions {
  uint64_t seed = 0;
  int64_t image_size = 128;  // 16 x 16 latents, 64 packed tokens
  int64_t vae_steps = 800;
  int64_t vae_batch = 8;
  int64_t vae_image_size = 64;  // the autoencoder is convolutional: it learns on smaller pictures
  int64_t transformer_steps = 48000;
  int64_t transformer_batch = 16;
  int64_t transformer_hidden = 128;  // the tiny preset's is 64
  /// The attention heads' width, and its split into FLUX.1's three RoPE
  /// axes (frame, row, column; each even, summing to head_dim). The frame
  /// axis's position is always 0 in FLUX.1, so its channels are not rotated.
  int64_t head_dim = 32;
  std::vector<int64_t> rope_axes{4, 14, 14};
  int64_t latent_pool = 8192;  // pictures encoded once, then drawn from
  double vae_lr = 1e-3;
  double transformer_lr = 2e-3;
  /// The share of samples whose prompt is replaced by the empty one, so that
  /// the model also learns the unconditional velocity that true CFG
  /// (`--true-cfg-scale`) steers away from.
  double uncond_prob = 0.1;
  /// Written to `_spdit_run_defaults`: the true CFG scale `spdit run` uses
  /// on this folder unless told otherwise (1: none).
  double run_true_cfg_scale = 3.0;
  /// Every this many transformer steps (0: never), a whole runnable folder
  /// with the weights so far (their moving average) goes to
  /// `snapshot_dir`/step-N: to watch a long run draw, or keep what it had.
  int64_t snapshot_every = 0;
  std::string snapshot_dir;
  /// Called with one line of progress at a time (step, loss, seconds).
  std::function<void(const std::string&)> log;
};

struct TrainDemoReport {
  std::vector<double> vae_loss, transformer_loss;  // per step
  double vae_seconds = 0, transformer_seconds = 0;
  double latent_shift = 0, latent_scale = 1;  // written to vae/config.json
  int64_t max_sequence_length = 0;            // T5's tokens it learned with (model_index.json)
  int64_t vae_readback_right = 0, vae_readback_pictures = 0;  // autoencoder_readback, at the end
};

/// Writes the trained folder `dir` (created; refused when it exists and is
/// not empty). The same seed and thread count give the same weights.
TrainDemoReport train_demo_model(const std::string& dir, const TrainDemoOptions& options);

/// Whether an autoencoder keeps what the demo draws: `pictures` fresh shape
/// pictures (size x size, drawn from `seed`) through encode and decode, each
/// read back by read_shape_picture. A rounded corner, a circle squashed or
/// a shifted colour shows as a misread: the prompt, then what was read, the
/// fill and the aspect.
struct AutoencoderReadback {
  int64_t pictures = 0, right = 0;
  std::vector<std::string> misread;
};
AutoencoderReadback autoencoder_readback(const std::string& dir, uint64_t seed, int64_t pictures,
                                         int64_t size);

}  // namespace spdit::pipelines
