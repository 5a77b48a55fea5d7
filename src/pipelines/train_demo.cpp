#include "spdit/pipelines/train_demo.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/flux.h"
#include "spdit/models/pipeline.h"
#include "spdit/pipelines/flux_image_pipeline.h"
#include "spdit/pipelines/flux_latents.h"
#include "spdit/pipelines/new_model.h"
#include "spdit/pipelines/shapes_data.h"
#include "spdit/text/t5_tokenizer.h"
#include "spdit/vae/vae_loader.h"
#include "spdit/vae/vae_writer.h"

namespace spdit::pipelines {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// FLUX.1's embedded guidance is trained at the value `spdit run` passes by
// default.
constexpr double kGuidance = 3.5;

void check_options(const TrainDemoOptions& o) {
  auto positive = [](int64_t v, const char* flag) {
    if (v <= 0)
      throw std::invalid_argument(std::string("spdit train-demo: ") + flag + " must be positive");
  };
  positive(o.vae_steps, "--vae-steps");
  positive(o.transformer_steps, "--steps");
  positive(o.vae_batch, "--vae-batch");
  positive(o.transformer_batch, "--batch");
  positive(o.latent_pool, "--pool");
  if (!(o.uncond_prob >= 0 && o.uncond_prob < 1))
    throw std::invalid_argument("spdit train-demo: --uncond-prob must be in [0, 1)");
  if (!(o.run_true_cfg_scale >= 1))
    throw std::invalid_argument("spdit train-demo: --run-true-cfg-scale must be at least 1");
  if (o.snapshot_every < 0 || (o.snapshot_every > 0) == o.snapshot_dir.empty()) {
    throw std::invalid_argument(
        "spdit train-demo: --snapshot-every N and --snapshot-dir DIR go together (N > 0)");
  }
  if (o.head_dim <= 0 || o.head_dim % 2 != 0)
    throw std::invalid_argument("spdit train-demo: --head-dim must be positive and even");
  if (o.transformer_hidden <= 0 || o.transformer_hidden % o.head_dim != 0) {
    throw std::invalid_argument(
        "spdit train-demo: --hidden " + std::to_string(o.transformer_hidden) +
        " must be a positive multiple of --head-dim " + std::to_string(o.head_dim));
  }
  int64_t axes_sum = 0;
  bool axes_even = o.rope_axes.size() == 3;
  for (int64_t a : o.rope_axes) {
    axes_sum += a;
    axes_even = axes_even && a >= 0 && a % 2 == 0;
  }
  if (!axes_even || axes_sum != o.head_dim) {
    throw std::invalid_argument(
        "spdit train-demo: --rope-axes must be three even channel counts (frame, row, column) "
        "that sum to --head-dim " +
        std::to_string(o.head_dim));
  }
  if (o.image_size % 16 != 0 || o.vae_image_size % 16 != 0 || o.image_size < 32 ||
      o.vae_image_size < 32) {
    throw std::invalid_argument(
        "spdit train-demo: image sizes must be multiples of 16, at least 32");
  }
}

// Loaded weights are the checkpoint's read-only file pages and carry no
// gradient: give each parameter its own memory and let autograd track it.
std::vector<at::Tensor> make_trainable(torch::nn::Module& m) {
  std::vector<at::Tensor> params;
  for (auto& p : m.parameters(true)) {
    p.set_data(p.detach().clone());
    p.set_requires_grad(true);
    params.push_back(p);
  }
  return params;
}

// Gradients scaled down to a total norm of at most `max_norm` (what
// torch.nn.utils.clip_grad_norm_ does; its C++ header needs all of
// torch/types.h).
void clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : params) {
    if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
  }
  const double norm = std::sqrt(sq);
  if (norm <= max_norm) return;
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(max_norm / (norm + 1e-6));
  }
}

void freeze(const std::vector<at::Tensor>& params) {
  for (auto p : params) p.set_requires_grad(false);
}

// Linear warm-up over the first 5% of steps, then cosine down to a tenth.
double learning_rate(double peak, int64_t step, int64_t steps) {
  const int64_t warm = std::max<int64_t>(1, steps / 20);
  if (step < warm) return peak * double(step + 1) / double(warm);
  const double progress = double(step - warm) / double(std::max<int64_t>(1, steps - warm));
  return peak * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress)));
}

void set_lr(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

// Progress about twenty times per phase, and at the last step, with the
// time left at the pace so far (a run of the defaults takes over an hour).
void report(const TrainDemoOptions& o, const char* phase, int64_t step, int64_t steps, double loss,
            double seconds) {
  if (!o.log || (step % std::max<int64_t>(1, steps / 20) != 0 && step != steps)) return;
  std::ostringstream s;
  s << phase << " step " << step << "/" << steps << "  loss " << std::setprecision(4) << loss
    << "  " << std::fixed << std::setprecision(1) << seconds << " s";
  if (step < steps) {
    const double left = seconds / double(step) * double(steps - step);
    s << ", about " << std::setprecision(0);
    if (left < 120) {
      s << std::ceil(left) << " s left";
    } else {
      s << std::ceil(left / 60) << " min left";
    }
  }
  o.log(s.str());
}

at::Tensor batch_of_pictures(std::mt19937_64& rng, int64_t n, int64_t size,
                             std::vector<std::string>* prompts) {
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < n; ++i) {
    auto s = draw_random_shape(rng, size);
    images.push_back(s.image);
    if (prompts) prompts->push_back(s.prompt);
  }
  return at::stack(images);
}

// The autoencoder's halves, called directly: AutoencoderKL's own encode and
// decode are inference entry points that switch autograd off.
struct VaeHalves {
  vae::VaeEncoderImpl* encoder;
  vae::VaeDecoderImpl* decoder;
  explicit VaeHalves(vae::AutoencoderKL& vae) {
    auto children = vae->named_children();
    encoder = children["encoder"]->as<vae::VaeEncoderImpl>();
    decoder = children["decoder"]->as<vae::VaeDecoderImpl>();
  }
  at::Tensor mean(const at::Tensor& x, int64_t latent_channels) const {
    return encoder->forward(x).narrow(1, 0, latent_channels);
  }
};

// Reconstruction: MSE on the pixels from the encoder's mean, and a light
// pull of the latents towards 0 so that their scale stays put.
void train_autoencoder(vae::AutoencoderKL& vae, const TrainDemoOptions& o, std::mt19937_64& rng,
                       TrainDemoReport& r) {
  auto params = make_trainable(*vae);
  VaeHalves halves(vae);
  const int64_t latent = vae->config().latent_channels;
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.vae_lr).weight_decay(0));
  const auto t0 = Clock::now();
  for (int64_t step = 0; step < o.vae_steps; ++step) {
    set_lr(opt, learning_rate(o.vae_lr, step, o.vae_steps));
    auto x = batch_of_pictures(rng, o.vae_batch, o.vae_image_size, nullptr);
    auto z = halves.mean(x, latent);
    auto loss = at::mse_loss(halves.decoder->forward(z), x) + 1e-4 * z.pow(2).mean();
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(params, 1.0);
    opt.step();
    r.vae_loss.push_back(loss.item<double>());
    report(o, "autoencoder", step + 1, o.vae_steps, r.vae_loss.back(), since(t0));
  }
  r.vae_seconds = since(t0);
  freeze(params);
}

at::Tensor to_pixels(const at::Tensor& image) {  // (3, H, W) in [-1, 1] -> (H, W, 3) uint8
  return ((image * 0.5 + 0.5).clamp(0, 1) * 255).round().to(at::kByte).permute({1, 2, 0});
}

AutoencoderReadback readback(vae::AutoencoderKL& vae, uint64_t seed, int64_t pictures,
                             int64_t size) {
  at::NoGradGuard no_grad;
  std::mt19937_64 rng(seed);
  AutoencoderReadback r;
  for (int64_t i = 0; i < pictures; ++i) {
    const auto s = draw_random_shape(rng, size);
    const auto z =
        vae->encode_moments(s.image.unsqueeze(0)).narrow(1, 0, vae->config().latent_channels);
    const auto got = read_shape_picture(to_pixels(vae->decode(z)[0]).contiguous());
    ++r.pictures;
    if (got.shape == s.shape && got.colour == s.colour && got.background == s.background &&
        got.well_proportioned) {
      ++r.right;
    } else {
      std::ostringstream m;
      m << s.prompt << ": read a " << got.colour << " " << got.shape << " on " << got.background
        << " (fill " << std::setprecision(3) << got.fill << ", aspect " << got.aspect << ")";
      r.misread.push_back(m.str());
    }
  }
  return r;
}

// Exponential moving average of the weights: what diffusion models ship,
// smoother than the last step's.
struct Ema {
  std::vector<at::Tensor> params, shadow;
  double decay;
  Ema(std::vector<at::Tensor> p, double d) : params(std::move(p)), decay(d) {
    for (const auto& t : params) shadow.push_back(t.detach().clone());
  }
  void update() {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i)
      shadow[i].mul_(decay).add_(params[i].detach(), 1 - decay);
  }
  void copy_to_params() {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadow[i]);
  }
  // Runs `use` with the averaged weights in place, then puts the trained
  // ones back (a snapshot in the middle of training).
  template <typename F>
  void with_averaged(F&& use) {
    std::vector<at::Tensor> kept;
    {
      at::NoGradGuard no_grad;
      for (const auto& p : params) kept.push_back(p.detach().clone());
    }
    copy_to_params();
    use();
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(kept[i]);
  }
};

// T5's tokens for the longest prompt with its </s>, rounded up to 8.
int64_t t5_tokens_needed(const std::string& dir, const std::vector<std::string>& prompts) {
  const auto tokenizer = text::T5Tokenizer::load(dir + "/tokenizer_2");
  int64_t longest = 0;
  for (const auto& p : prompts) {
    const auto ids = tokenizer.encode(p, 512, /*warn=*/false).ids;
    longest = std::max<int64_t>(
        longest, std::count_if(ids.begin(), ids.end(), [](int64_t id) { return id != 0; }));
  }
  return (longest + 7) / 8 * 8;
}

// What `spdit run --model-dir` takes where its flags are not given
// (ModelDir::run_defaults): the size and T5 length the model learned.
void write_run_defaults(const std::string& dir, const TrainDemoOptions& o,
                        const TrainDemoReport& r) {
  const std::string path = dir + "/model_index.json";
  nlohmann::json index;
  {
    std::ifstream in(path);
    index = nlohmann::json::parse(in);
  }
  index["_spdit_run_defaults"] = {{"height", o.image_size},
                                  {"width", o.image_size},
                                  {"max_sequence_length", r.max_sequence_length},
                                  {"true_cfg_scale", o.run_true_cfg_scale}};
  index["_spdit_train_demo"] = {{"seed", o.seed},
                                {"vae_steps", o.vae_steps},
                                {"steps", o.transformer_steps},
                                {"batch", o.transformer_batch},
                                {"pool", o.latent_pool},
                                {"hidden", o.transformer_hidden},
                                {"head_dim", o.head_dim},
                                {"rope_axes", o.rope_axes},
                                {"uncond_prob", o.uncond_prob}};
  std::ofstream out(path);
  out << index.dump(2) << "\n";
  if (!out.flush()) throw std::runtime_error("spdit: cannot write '" + path + "'");
}

// Replaces a component's weights file: the old one may still be mapped
// (loaded weights are its pages), so it is unlinked, never truncated.
void unlink_weights(const std::string& folder) {
  std::filesystem::remove(folder + "/diffusion_pytorch_model.safetensors");
}

// `dir` as it stands, with `model`'s weights as its transformer, copied to
// `to` (which must not exist yet).
void write_snapshot(const std::string& dir, const std::string& to,
                    const checkpoints::Identified& info, HookableModule& model) {
  if (std::filesystem::exists(to))
    throw std::runtime_error("spdit train-demo: snapshot '" + to + "' exists already");
  std::filesystem::create_directories(std::filesystem::path(to).parent_path());
  std::filesystem::copy(dir, to, std::filesystem::copy_options::recursive);
  unlink_weights(to + "/transformer");
  checkpoints::write_transformer_folder(to + "/transformer", info.config, model, at::kFloat);
}

}  // namespace

AutoencoderReadback autoencoder_readback(const std::string& dir, uint64_t seed, int64_t pictures,
                                         int64_t size) {
  auto vae = vae::load_autoencoder(dir, at::kFloat).model;
  return readback(vae, seed, pictures, size);
}

TrainDemoReport train_demo_model(const std::string& dir, const TrainDemoOptions& o) {
  check_options(o);
  NewModelOptions fresh;
  fresh.model = "flux", fresh.preset = "tiny", fresh.seed = o.seed, fresh.dtype = at::kFloat;
  write_new_model(dir, fresh);  // refuses a non-empty folder before any work
  TrainDemoReport r;
  std::mt19937_64 rng(o.seed);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1000);

  // 1. The autoencoder. new-model's tiny one normalises 32 channels in 32
  // groups: every channel on its own loses its mean over the picture, and
  // with it a flat colour. In groups of four channels the colour survives as
  // their relative levels (FLUX.1's has 4 to 16 channels a group).
  auto vae_config = vae::load_autoencoder(dir, at::kFloat).model->config();
  vae_config.norm_num_groups = 8;
  unlink_weights(dir + "/vae");
  vae::write_random_autoencoder(dir + "/vae", vae_config, o.seed + 3, at::kFloat);
  auto vae = vae::load_autoencoder(dir, at::kFloat).model;
  train_autoencoder(vae, o, rng, r);
  {
    // Pictures of the size the transformer learns at, none of them trained on.
    const auto check = readback(vae, o.seed + 7, 60, o.image_size);
    r.vae_readback_right = check.right, r.vae_readback_pictures = check.pictures;
    if (o.log) {
      o.log("autoencoder reads back " + std::to_string(check.right) + "/" +
            std::to_string(check.pictures) + " fresh pictures right");
      for (const auto& m : check.misread) o.log("  misread: " + m);
    }
  }

  // The pictures the transformer learns from, encoded once; their latents'
  // mean and spread become the config's shift and scaling factors (what
  // FLUX.1's factors are for its own autoencoder).
  std::vector<std::string> pool_prompts;
  at::Tensor latents;
  {
    at::NoGradGuard no_grad;
    VaeHalves halves(vae);
    std::vector<at::Tensor> chunks;
    for (int64_t done = 0; done < o.latent_pool; done += 32) {
      auto x = batch_of_pictures(rng, std::min<int64_t>(32, o.latent_pool - done), o.image_size,
                                 &pool_prompts);
      chunks.push_back(halves.mean(x, vae->config().latent_channels));
    }
    latents = at::cat(chunks);
  }
  r.latent_shift = latents.mean().item<double>();
  r.latent_scale = 1.0 / latents.std().item<double>();
  auto config = vae->config();
  config.shift_factor = r.latent_shift;
  config.scaling_factor = r.latent_scale;
  unlink_weights(dir + "/vae");
  vae::write_autoencoder(dir + "/vae", vae, config, at::kFloat);
  const auto x0_pool = pack_flux_latents((latents - r.latent_shift) * r.latent_scale);

  // 2. The transformer, wider than the tiny preset's 64 (a 64-wide one
  // learns the colours but not yet clean shapes in this many steps), and
  // reading the folder's own (frozen) text encoders,
  // with T5 cut to the vocabulary's longest prompt: 512 tokens, nearly all
  // padding, would cost most of the training time.
  auto flux_config = models::FluxConfig::preset("tiny");
  flux_config.hidden = o.transformer_hidden;
  flux_config.head_dim = o.head_dim;
  flux_config.heads = o.transformer_hidden / o.head_dim;
  flux_config.axes_dims = o.rope_axes;
  {
    auto fresh_model =
        models::make_pipeline(flux_config, o.seed, models::Weights::kSeeded, at::kFloat);
    unlink_weights(dir + "/transformer");
    checkpoints::write_transformer_folder(dir + "/transformer", flux_config, fresh_model->model(),
                                          at::kFloat);
  }
  FluxImagePipeline flux(ModelDir::open(dir), at::kFloat);
  const auto prompts = all_shape_prompts();
  r.max_sequence_length = t5_tokens_needed(dir, prompts);
  flux.set_max_sequence_length(r.max_sequence_length);
  write_run_defaults(dir, o, r);
  std::map<std::string, int64_t> prompt_index;
  std::vector<at::Tensor> t5, clip;
  // The 90 prompts, then the empty one (true CFG's negative prompt).
  auto texts = prompts;
  texts.push_back("");
  for (const auto& p : texts) {
    prompt_index[p] = static_cast<int64_t>(t5.size());
    auto e = flux.encode(p);
    t5.push_back(e.prompt_embeds);
    clip.push_back(e.pooled_prompt_embeds);
  }
  const int64_t empty_prompt = prompt_index.at("");
  const auto t5_all = at::cat(t5), clip_all = at::cat(clip);
  std::vector<int64_t> which;
  for (const auto& p : pool_prompts) which.push_back(prompt_index.at(p));
  const auto pool_text = at::tensor(which, at::kLong);

  auto& model = flux.transformer();
  auto params = make_trainable(model);
  Ema ema(params, 0.995);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.transformer_lr).weight_decay(0));
  const auto grid = flux.grid(o.image_size, o.image_size);
  const auto img_ids = flux_latent_image_ids(grid);
  const auto txt_ids = at::zeros({t5_all.size(1), 3});
  // t as FLUX.1 draws it in training: logit-normal, then shifted by the same
  // mu the scheduler shifts its sigmas with at this token count.
  const double shift =
      std::exp(flux_time_shift_mu(grid.tokens(), FlowMatchEulerConfig::from_model_dir(dir)));
  const int64_t b = o.transformer_batch;
  const auto t0 = Clock::now();
  for (int64_t step = 0; step < o.transformer_steps; ++step) {
    set_lr(opt, learning_rate(o.transformer_lr, step, o.transformer_steps));
    auto idx = at::randint(x0_pool.size(0), {b}, gen, at::kLong);
    auto x0 = x0_pool.index_select(0, idx);
    auto text = pool_text.index_select(0, idx);
    if (o.uncond_prob > 0)
      text =
          at::where(at::rand({b}, gen).lt(o.uncond_prob), at::full_like(text, empty_prompt), text);
    auto noise = at::randn(x0.sizes(), gen);
    auto u = at::sigmoid(at::randn({b}, gen));
    auto t = shift * u / (1 + (shift - 1) * u);
    auto tv = t.view({b, 1, 1});
    auto xt = (1 - tv) * x0 + tv * noise;
    auto v = model
                 .call({xt}, {{"encoder_hidden_states", t5_all.index_select(0, text)},
                              {"pooled_projections", clip_all.index_select(0, text)},
                              {"timestep", t},
                              {"img_ids", img_ids},
                              {"txt_ids", txt_ids},
                              {"guidance", at::full({b}, kGuidance)}})
                 .tensor();
    auto loss = at::mse_loss(v, noise - x0);
    opt.zero_grad();
    loss.backward();
    clip_grad_norm(params, 1.0);
    opt.step();
    ema.update();
    r.transformer_loss.push_back(loss.item<double>());
    report(o, "transformer", step + 1, o.transformer_steps, r.transformer_loss.back(), since(t0));
    if (o.snapshot_every > 0 && (step + 1) % o.snapshot_every == 0 &&
        step + 1 < o.transformer_steps) {
      const std::string to = o.snapshot_dir + "/step-" + std::to_string(step + 1);
      ema.with_averaged([&] { write_snapshot(dir, to, flux.transformer_info(), model); });
      if (o.log) o.log("wrote snapshot " + to);
    }
  }
  r.transformer_seconds = since(t0);
  ema.copy_to_params();
  freeze(params);
  unlink_weights(dir + "/transformer");
  checkpoints::write_transformer_folder(dir + "/transformer", flux.transformer_info().config, model,
                                        at::kFloat);
  return r;
}

}  // namespace spdit::pipelines
