// `spdit run`: a flow-matching Euler denoising loop of a reference DiT under
// sequence parallelism, from seeded noise and seeded text embeddings.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "auto_layout.h"
#include "commands.h"
#include "error_text.h"
#include "generate.h"
#include "launcher.h"
#include "model_flags.h"
#include "output_paths.h"
#include "parity_report.h"
#include "png_writer.h"
#include "predict.h"
#include "qwen_generate.h"
#include "rank_setup.h"
#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/weights.h"
#include "spdit/pipelines/guidance.h"
#include "spdit/pipelines/qwen_image_pipeline.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/sharding/sharded_weights.h"
#include "validators.h"
#include "wan_generate.h"

namespace spdit::cli {
namespace {

struct RunOptions {
  bool model_given = false;  // --model on the command line (a checkpoint must agree)
  std::string model = "flux";
  std::string preset = "small";
  int nproc = 0, ulysses = 0, ring = 0, steps = 8, threads = 1, cfg = 1;
  double cfg_scale = 1.0;
  int64_t height = 1024, width = 1024, frames = 1, text_len = 64;
  uint64_t seed = 42;
  std::string weights, out, json, dtype;
  bool check = false;
  bool oversubscribe = false;
  std::string parallel = "manual";
  bool cfg_given = false, cfg_scale_given = false;
  // A whole pipeline from a model folder (generate.h).
  std::string model_dir, prompt, prompt_embeds, noise, dump;
  double guidance = 3.5;
  bool steps_given = false, weights_flags_given = false;
  // Wan2.1 folders (wan_generate.h): a video.
  std::string negative_prompt, frames_out, scheduler = "unipc";
  int fps = 16;
  bool frames_given = false, size_given = false, guidance_given = false;
  std::string vae_parallel = "on";
  bool vae_parallel_given = false;
  bool shard_weights = false;
  std::string memory_per_rank;  // --parallel auto's budget: bytes, "auto", or "" (auto if known)
  bool height_given = false, width_given = false;
  int64_t max_sequence_length = 0;     // --model-dir: 0 is the folder's, else the variant's
  bool negative_prompt_given = false;  // Qwen-Image: true CFG only with a negative prompt
};

using Clock = std::chrono::steady_clock;

std::string mb(int64_t bytes) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << bytes / 1e6 << " MB";
  return os.str();
}

models::RunSize size_of(const RunOptions& o) {
  return {o.height, o.width, o.frames, o.text_len, 1};
}

// Peaks of live tensor bytes (memory_meter.h) at two scopes: each forward
// above what was alive when it started (its activations: inputs, latent and
// weights excluded), and the whole loop. One meter serves both: its peak is
// folded into the loop's before each per-forward reset.
struct MemoryPeaks {
  int64_t forward_activations = 0;
  int64_t loop = 0;
  void fold() { loop = std::max(loop, tensor_bytes_peak()); }
};

// A NaN or Inf never heals: every later step and the output keep it. Said at
// the step where it first appears, and the run fails.
void check_finite(const at::Tensor& v, int step, int steps, double sigma) {
  if (at::isfinite(v).all().item<bool>()) return;
  const int64_t nan = at::isnan(v).sum().item<int64_t>();
  const int64_t inf = at::isinf(v).sum().item<int64_t>();
  std::ostringstream os;
  os << "step " << step + 1 << "/" << steps << " (sigma " << std::setprecision(3) << sigma
     << "): the model's output holds " << nan << " NaN and " << inf << " Inf value(s) of "
     << v.numel()
     << "; the result would be garbage. Check the weights (--weights) for NaN/Inf values";
  throw std::runtime_error(os.str());
}

// Bytes every rank must hold whole before the first step: the text
// embeddings and each attention's replicated text keys, queries and values,
// and the latent. A floor, not the peak: enough to refuse an impossible size
// (`--text-len 2000000000`) with numbers before a single allocation.
int64_t replicated_bytes_floor(const models::ForwardShapes& shapes, const models::RunSize& size) {
  int64_t floor = 0;
  for (const auto& site : shapes.sites) {
    if (site.gather || site.dim != 1) continue;
    int64_t n = 4;
    for (auto d : site.full_shape) n *= d;
    floor += n;
  }
  for (const auto& a : shapes.attention) {
    floor += 3 * shapes.elem_bytes * size.batch * a.text_len * a.heads * a.head_dim;
  }
  return floor;
}

void check_memory_floor(const models::ForwardShapes& shapes, const models::RunSize& size,
                        int local_ranks) {
  const int64_t need = replicated_bytes_floor(shapes, size) * local_ranks;
  const int64_t avail = available_memory_bytes();
  if (avail > 0 && need > avail) {
    throw std::runtime_error(
        "out of memory before the first step: " + std::to_string(local_ranks) +
        " rank(s) here need at least " + gigabytes(static_cast<double>(need)) +
        " for the latent, the text (--text-len " + std::to_string(size.text_len) +
        ") and attention's text keys and values, and this machine has " +
        gigabytes(static_cast<double>(avail)) +
        " available. Lower --text-len, --height/--width, or run fewer ranks per machine");
  }
}

// What one rank's tensors may hold: SPDIT_MEMORY_LIMIT_MB (for sharing a
// machine, and tests), else its share of the memory available now; 0 when
// unknown. `why` says where the figure comes from, for messages.
int64_t rank_memory_budget(int local_ranks, std::string& why) {
  if (const char* mb = std::getenv("SPDIT_MEMORY_LIMIT_MB"); mb && *mb) {
    char* end = nullptr;
    const double v = std::strtod(mb, &end);
    if (end == mb || *end || !(v > 0) || v > 1e12) {
      throw std::invalid_argument(
          std::string("SPDIT_MEMORY_LIMIT_MB='") + mb +
          "' is not a positive number of megabytes; set it like SPDIT_MEMORY_LIMIT_MB=4096");
    }
    why = "SPDIT_MEMORY_LIMIT_MB=" + std::string(mb);
    return static_cast<int64_t>(v * 1e6);
  }
  const int64_t avail = available_memory_bytes();
  why = "the " + gigabytes(static_cast<double>(avail)) + " available on this machine" +
        (local_ranks > 1 ? " shared by its " + std::to_string(local_ranks) + " ranks" : "");
  return avail / local_ranks;
}

// Tensors past the budget are refused with numbers, instead of the kernel's
// out-of-memory killer ending the rank (or, with overcommit refused, a c10
// error with a stack per rank).
void limit_tensor_memory(int local_ranks) {
  std::string why;
  const int64_t budget = rank_memory_budget(local_ranks, why);
  if (budget > 0) set_tensor_bytes_limit(tensor_bytes_live() + budget, why);
}

// The weights each rank allocates, counted before a byte is: the preset's
// parameters in `dtype`; for a checkpoint, its tensors not stored in the
// dtype the model wants (the others are used in place, from pages the local
// ranks share).
void check_weights_fit(const RunOptions& o, at::ScalarType dtype,
                       const checkpoints::Checkpoint* ckpt, const checkpoints::Identified* found,
                       int local_ranks) {
  const int64_t per_rank = ckpt ? checkpoints::converted_bytes(*ckpt, *found, dtype)
                                : models::parameter_count(o.model, o.preset) *
                                      static_cast<int64_t>(c10::elementSize(dtype));
  std::string why;
  const int64_t budget = rank_memory_budget(local_ranks, why);
  // Sharded, a rank holds 1/P of the blocks: the tensor limit still refuses
  // with numbers what does not fit.
  if (o.shard_weights) return;
  if (budget <= 0 || per_rank <= budget) return;
  const std::string name = models::dtype_name(dtype);
  const std::string what = ckpt ? "of --weights " + o.weights + " (converted to " + name + ")"
                                : "of --model " + o.model + " --preset " + o.preset + " in " + name;
  std::string fixes = dtype == at::kFloat ? "--dtype bf16 (half the bytes), " : "";
  fixes += ckpt ? "a smaller model" : "a smaller --preset";
  fixes += ", --shard-weights (a rank keeps 1/P of the blocks)";
  throw std::runtime_error("out of memory before any work: the weights " + what + " need " +
                           gigabytes(static_cast<double>(per_rank)) +
                           " per rank (every rank holds them whole), more than the " +
                           gigabytes(static_cast<double>(budget)) + " a rank may use (" + why +
                           "). Use " + fixes +
                           ", fewer ranks per machine, or a machine with more memory");
}

// --cfg 2 needs guidance and an even number of ranks; said once, before any
// rank starts when spdit starts them.
std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void check_guidance_flags(const RunOptions& o, int ranks) {
  const std::string scale = number(o.cfg_scale);
  if (o.cfg == 2 && !(o.cfg_scale > 1)) {
    throw std::invalid_argument(
        "--cfg 2 runs the two branches of classifier-free guidance at once; without "
        "guidance (--cfg-scale " +
        scale +
        ", off unless above 1) there is one "
        "branch: pass --cfg-scale (e.g. 5) or leave --cfg out");
  }
  if (ranks % o.cfg != 0) {
    throw std::invalid_argument("--cfg " + std::to_string(o.cfg) + " splits the ranks in " +
                                std::to_string(o.cfg) + " halves, but there are " +
                                std::to_string(ranks) + ": start an even number");
  }
}

// Denoises from seeded noise: x <- x + (sigma_next - sigma) * v(x, sigma),
// v guided when --cfg-scale > 1 (both branches here, or one per half of the
// world when `parallel` has a CFG degree of 2).
at::Tensor denoise(models::Pipeline& pipe, const RunOptions& o, bool report,
                   std::vector<double>* step_seconds, MemoryPeaks* peaks = nullptr,
                   const ParallelState* parallel = nullptr) {
  at::NoGradGuard no_grad;
  auto x = pipe.prepare(size_of(o), o.seed + 1);
  for (int i = 0; i < o.steps; ++i) {
    const double sigma = 1.0 - static_cast<double>(i) / o.steps;
    const double next = 1.0 - static_cast<double>(i + 1) / o.steps;
    auto t0 = Clock::now();
    int64_t live_before = 0;
    if (peaks) {
      peaks->fold();
      live_before = reset_tensor_bytes_peak();
    }
    auto v = pipelines::guided_velocity(pipe, x, sigma, o.cfg_scale, parallel);
    check_finite(v, i, o.steps, sigma);
    if (peaks) {
      peaks->forward_activations =
          std::max(peaks->forward_activations, tensor_bytes_peak() - live_before);
      peaks->fold();
    }
    x = x + (next - sigma) * v;
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (step_seconds) step_seconds->push_back(s);
    if (report) {
      const int width = 24, done = (i + 1) * width / o.steps;
      std::cerr << "[" << std::string(done, '#') << std::string(width - done, '.') << "] step "
                << i + 1 << "/" << o.steps << "  " << std::fixed << std::setprecision(3) << s
                << " s/step" << (isatty(STDERR_FILENO) ? "\r" : "\n") << std::flush;
    }
  }
  if (report && isatty(STDERR_FILENO)) std::cerr << "\n";
  return x;
}

GenerateOptions generate_options(const RunOptions& o) {
  if (o.weights_flags_given || o.frames_given || o.parallel == "auto") {
    throw std::invalid_argument(
        "--model-dir runs the model folder's own pipeline: leave out --model, --preset, "
        "--weights, --frames, --text-len and --parallel");
  }
  GenerateOptions g;
  g.model_dir = o.model_dir, g.prompt = o.prompt, g.prompt_embeds = o.prompt_embeds,
  g.noise = o.noise;
  g.dump = o.dump, g.out = o.out, g.json = o.json, g.dtype = o.dtype;
  g.height = o.height_given ? o.height : 0, g.width = o.width_given ? o.width : 0;
  g.max_sequence_length = o.max_sequence_length;
  g.steps = o.steps_given ? o.steps : 0, g.seed = o.seed;
  g.guidance = o.guidance, g.ulysses = o.ulysses, g.ring = o.ring, g.threads = o.threads,
  g.check = o.check;
  g.true_cfg_scale = o.cfg_scale_given ? o.cfg_scale : -1, g.cfg = o.cfg;
  g.negative_prompt = o.negative_prompt, g.negative_prompt_given = o.negative_prompt_given;
  g.vae_parallel = o.vae_parallel == "on";
  g.shard_weights = o.shard_weights;
  return g;
}

WanGenerateOptions wan_generate_options(const RunOptions& o) {
  if (o.weights_flags_given || o.cfg_scale > 1 || o.parallel == "auto") {
    throw std::invalid_argument(
        "--model-dir runs the model folder's own pipeline: leave out --model, --preset, "
        "--weights, --text-len, --cfg-scale (Wan's guidance scale is --guidance) and --parallel");
  }
  WanGenerateOptions g;
  g.model_dir = o.model_dir, g.prompt = o.prompt, g.negative_prompt = o.negative_prompt;
  g.prompt_embeds = o.prompt_embeds, g.noise = o.noise, g.dump = o.dump, g.out = o.out,
  g.json = o.json;
  g.frames_out = o.frames_out, g.dtype = o.dtype, g.scheduler = o.scheduler, g.fps = o.fps;
  if (o.size_given) g.height = o.height, g.width = o.width;
  if (o.frames_given) g.frames = o.frames;
  if (o.steps_given) g.steps = o.steps;
  if (o.guidance_given) g.guidance = o.guidance;
  g.seed = o.seed, g.ulysses = o.ulysses, g.ring = o.ring, g.cfg = o.cfg, g.threads = o.threads,
  g.check = o.check;
  g.vae_parallel = o.vae_parallel == "on";
  g.shard_weights = o.shard_weights;
  return g;
}

QwenGenerateOptions qwen_generate_options(const RunOptions& o) {
  if (o.weights_flags_given || o.frames_given || o.cfg_scale > 1 || o.parallel == "auto") {
    throw std::invalid_argument(
        "--model-dir runs the model folder's own pipeline: leave out --model, --preset, "
        "--weights, --frames, --text-len, --cfg-scale (Qwen-Image's true CFG scale is --guidance) "
        "and --parallel");
  }
  QwenGenerateOptions g;
  g.model_dir = o.model_dir, g.prompt = o.prompt, g.negative_prompt = o.negative_prompt;
  g.negative_prompt_given = o.negative_prompt_given;
  g.prompt_embeds = o.prompt_embeds, g.noise = o.noise, g.dump = o.dump, g.out = o.out,
  g.json = o.json, g.dtype = o.dtype;
  if (o.height_given) g.height = o.height;
  if (o.width_given) g.width = o.width;
  if (o.steps_given) g.steps = o.steps;
  if (o.guidance_given) g.guidance = o.guidance;
  g.seed = o.seed, g.ulysses = o.ulysses, g.ring = o.ring, g.cfg = o.cfg, g.threads = o.threads,
  g.check = o.check;
  g.vae_parallel = o.vae_parallel == "on";
  g.shard_weights = o.shard_weights;
  return g;
}

int run_rank(World& world, const RunOptions& given) {
  if (!given.model_dir.empty() && pipelines::QwenImageFiles::is_qwen_image_folder(given.model_dir))
    return qwen_generate_rank(world, qwen_generate_options(given));
  if (!given.model_dir.empty() && pipelines::WanFiles::is_wan_folder(given.model_dir))
    return wan_generate_rank(world, wan_generate_options(given));
  if (!given.model_dir.empty()) return generate_rank(world, generate_options(given));
  if (!given.prompt.empty() || !given.prompt_embeds.empty() || !given.noise.empty() ||
      !given.dump.empty() || given.vae_parallel_given) {
    throw std::invalid_argument(
        "--prompt, --prompt-embeds, --noise, --dump and --vae-parallel run a whole pipeline: "
        "give the model folder with --model-dir");
  }
  RunOptions o = given;  // --parallel auto fills in the degrees
  set_threads_per_rank(o.threads);
  install_memory_meter();
  const bool automatic = o.parallel == "auto";
  if (automatic && (o.ulysses || o.ring || o.cfg_given)) {
    throw std::invalid_argument(
        "--parallel auto chooses --cfg, --ulysses and --ring itself: leave them out "
        "(or give them and leave --parallel out)");
  }
  if (!automatic && !o.memory_per_rank.empty()) {
    throw std::invalid_argument(
        "--memory-per-rank is the budget --parallel auto weighs layouts against: add "
        "--parallel auto, or leave --memory-per-rank out");
  }
  check_guidance_flags(o, world.size());
  auto [u, r] = automatic ? std::pair<int, int>{world.size(), 1}
                          : resolve_degrees(world.size(), o.ulysses, o.ring, o.cfg);
  if (world.rank() == 0) {  // the rank that writes them, before any work
    check_can_write(o.out, "--out");
    check_can_write(o.json, "--json");
  }
  check_ranks_agree(world, {{"--model", o.model},
                            {"--preset", o.preset},
                            {"--height", std::to_string(o.height)},
                            {"--width", std::to_string(o.width)},
                            {"--frames", std::to_string(o.frames)},
                            {"--text-len", std::to_string(o.text_len)},
                            {"--steps", std::to_string(o.steps)},
                            {"--seed", std::to_string(o.seed)},
                            {"--parallel", o.parallel},
                            {"--ulysses", automatic ? "auto" : std::to_string(u)},
                            {"--ring", automatic ? "auto" : std::to_string(r)},
                            {"--weights", o.weights},
                            {"--dtype", o.dtype},
                            {"--cfg", std::to_string(o.cfg)},
                            {"--cfg-scale", std::to_string(o.cfg_scale)},
                            {"--shard-weights", o.shard_weights ? "on" : "off"}});
  const char* local = std::getenv("LOCAL_WORLD_SIZE");
  const int local_ranks = local && std::atoi(local) > 0 ? std::atoi(local) : 1;
  limit_tensor_memory(local_ranks);
  // A checkpoint decides the model and its dimensions; the preset is for
  // random weights only.
  std::optional<checkpoints::Checkpoint> ckpt;
  std::optional<checkpoints::Identified> found;
  if (!o.weights.empty()) {
    ckpt = checkpoints::Checkpoint::open(o.weights);
    found = checkpoints::identify(*ckpt);
    const std::string asked = o.model == "qwen_image" ? "qwen-image" : o.model;
    if (o.model_given && asked != found->model) {
      throw std::invalid_argument("--weights " + o.weights + " holds a " + found->model +
                                  " checkpoint (" + found->layout + " layout, " + found->variant +
                                  "), not --model " + o.model +
                                  ": leave --model out, the checkpoint says which model it is");
    }
  }
  const auto dtype = resolve_dtype(o.dtype, found ? &*found : nullptr);
  models::check_dtype_runs(dtype);
  const auto size = size_of(o);
  std::string auto_report;
  if (automatic) {
    // Chosen on the model's skeleton, before a byte of weights: the choice
    // says whether they are made whole or sharded.
    const auto config = found ? found->config : models::preset_config(o.model, o.preset);
    auto skeleton = models::make_pipeline(config, o.seed, models::Weights::kNone, dtype);
    skeleton->check_size(size);
    MemoryNeed memory;
    if (!o.memory_per_rank.empty() || available_memory_bytes() > 0) {
      memory = memory_budget(o.memory_per_rank.empty() ? "auto" : o.memory_per_rank, local_ranks);
    }
    // Every rank takes the smallest budget (available memory moves): all choose alike.
    const auto budgets = all_gather_ints(world.group(), {memory.budget});
    memory.budget = *std::min_element(budgets.begin(), budgets.end());
    const auto keep = models::keep_in_fp32_modules(config);
    // Every rank measures and takes the slowest figures: all choose alike.
    const auto choice = choose_layout(
        *skeleton, skeleton->shapes(size), size, world.size(), o.cfg_scale > 1, &world, 0, memory,
        [&](const std::string& name) { return models::parameter_dtype(name, dtype, keep); });
    throw_if_nothing_fits(choice.candidates, choice.memory);
    throw_if_impossible(choice.best().prediction);
    o.cfg = choice.best().cfg, u = choice.best().ulysses, r = choice.best().ring;
    o.shard_weights = o.shard_weights || choice.best().shard;
    auto_report = choice.table();
  }
  check_weights_fit(o, dtype, ckpt ? &*ckpt : nullptr, found ? &*found : nullptr, local_ranks);
  std::unique_ptr<models::Pipeline> pipe;
  // --shard-weights from a checkpoint: the blocks' tensors stay in the file
  // until ShardedWeights reads (and converts) this rank's slice of them.
  std::map<std::string, at::Tensor> stored_blocks;
  const bool shard = o.shard_weights && world.size() > 1;
  try {
    if (ckpt && shard) {
      pipe = models::make_pipeline(found->config, o.seed, models::Weights::kNone, dtype);
      stored_blocks = checkpoints::load_checkpoint_leaving(
          pipe->model(), *ckpt, *found, dtype,
          ShardedWeights::block_parameter_names(pipe->model()));
    } else {
      pipe =
          ckpt ? checkpoints::make_pipeline(*ckpt, *found, o.seed, dtype)
               : models::make_pipeline(o.model, o.preset, o.seed, models::Weights::kSeeded, dtype);
    }
  } catch (const TensorMemoryLimitExceeded& e) {
    throw std::runtime_error(
        std::string(e.what()) + " (while making the weights of " +
        (ckpt ? "--weights " + o.weights : "--model " + o.model + " --preset " + o.preset) + ")");
  }
  pipe->check_size(size);
  auto shapes = pipe->shapes(size);
  const auto guidance = guidance_of(o.cfg_scale, o.cfg);
  auto prediction = predict_step(shapes, size, u, r, guidance);
  throw_if_impossible(prediction);
  check_memory_floor(shapes, size, local_ranks);

  SequenceParallelConfig cfg{u, r};
  cfg.cfg_degree = o.cfg;
  cfg.setup(world);
  apply_sequence_parallel(pipe->model(), cfg);
  std::unique_ptr<ShardedWeights> shards;
  if (shard) {
    add_sharded_weights(
        prediction, ShardedWeights::predict_received_bytes_per_forward(pipe->model(), world.size()),
        guidance);
    // The file's pages a rank reads its slices from go as soon as they are
    // read: they would count in its peak.
    shards = std::make_unique<ShardedWeights>(pipe->model(), new_shard_group(world), stored_blocks,
                                              [&](const at::Tensor& t) { ckpt->release_pages(t); });
    stored_blocks.clear();
  }
  const bool lead = world.rank() == 0;
  if (lead) {
    std::cout << "spdit run: " << pipe->name() << "/"
              << (found ? found->variant + " from " + o.weights : o.preset) << " " << o.height
              << "x" << o.width
              << (pipe->name() == "wan" ? " x" + std::to_string(o.frames) + " frames"
                                        : std::string())
              << ", text " << o.text_len << ", " << models::dtype_name(dtype) << ", " << o.steps
              << " steps, " << world.size() << " rank(s) (" << (o.cfg == 2 ? "cfg 2 x " : "")
              << "ulysses " << u << " x ring " << r << "), "
              << (guidance == Guidance::kOff
                      ? std::string()
                      : "guidance " + number(o.cfg_scale) +
                            (o.cfg == 2 ? " (branches in parallel), " : " (serial), "))
              << o.threads << " thread(s) per rank" << std::endl;
    if (automatic) std::cout << "--parallel auto:\n" << auto_report;
    std::cout << "note: random weights and seeded text embeddings: the picture is noise (a model "
                 "folder with "
                 "--model-dir and --prompt makes a real one)"
              << std::endl;
    for (const auto& n : prediction.notes) std::cout << "note: " << n << std::endl;
  }
  world.barrier();
  world.counters().reset();
  // Activations: the peak of live tensors above what weights and inputs hold
  // now (exact, from the metered allocator); the resident peak above the
  // resident size now is reported beside it (it also holds what glibc cached).
  int64_t weight_bytes = 0;  // with sharded weights: the blocks' shards and the rest whole
  for (const auto& p : pipe->model().parameters()) weight_bytes += p.numel() * p.element_size();
  if (shards) weight_bytes += shards->kept_bytes();
  // Loading's resident peak (weights made, converted, sharded), before the loop's.
  const int64_t load_peak = peak_rss_bytes();
  const int64_t resident_before = reset_peak_rss();
  const int64_t tensors_before = reset_tensor_bytes_peak();
  std::vector<double> steps;
  auto t0 = Clock::now();
  MemoryPeaks mem;
  auto x = denoise(*pipe, o, lead, &steps, &mem, &cfg.state());
  mem.fold();
  world.barrier();
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto moved = world.counters().snapshot();
  int64_t sent = 0;
  for (const auto& [k, b] : moved) sent += b.sent;
  const int64_t predicted = prediction.total_bytes() * o.steps;
  auto peaks = all_gather_ints(
      world.group(), {peak_rss_bytes(), peak_rss_bytes() - resident_before, mem.forward_activations,
                      mem.loop - tensors_before, load_peak});
  int64_t peak = 0, resident_activation = 0, activation = 0, loop = 0, load = 0;
  std::vector<int64_t> activations, resident_activations, loops, loads;
  for (size_t i = 0; i < peaks.size(); i += 5) {
    load = std::max(load, peaks[i + 4]);
    loads.push_back(peaks[i + 4]);
    peak = std::max(peak, peaks[i]);
    resident_activation = std::max(resident_activation, peaks[i + 1]);
    resident_activations.push_back(peaks[i + 1]);
    activation = std::max(activation, peaks[i + 2]);
    activations.push_back(peaks[i + 2]);
    loop = std::max(loop, peaks[i + 3]);
    loops.push_back(peaks[i + 3]);
  }

  int code = 0;
  nlohmann::json j;
  if (lead) {
    auto sorted = steps;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    std::cout << "total " << std::fixed << std::setprecision(3) << total << " s, median step "
              << median << " s" << std::endl;
    std::cout << "tokens per rank: " << prediction.tokens_per_rank << " of " << shapes.tokens
              << (prediction.padded_tokens != shapes.tokens
                      ? " (padded to " + std::to_string(prediction.padded_tokens) + ")"
                      : std::string())
              << (o.text_len && pipe->name() != "wan"
                      ? ", plus " + std::to_string(o.text_len) + " text tokens replicated"
                      : std::string())
              << std::endl;
    std::cout << "communication per rank: " << mb(sent) << " sent";
    for (const auto& [k, b] : moved) std::cout << ", " << k << " " << mb(b.sent);
    std::cout << "; predicted " << mb(predicted) << (predicted == sent ? " (match)" : " (MISMATCH)")
              << std::endl;
    std::cout << "peak memory per rank (max over ranks): forward activations " << mb(activation)
              << "; whole loop " << mb(loop) << " above the " << mb(tensors_before)
              << " held before it (adds the latent and inputs, replicated); weights "
              << mb(weight_bytes)
              << (shards ? ", sharded (" + mb(shards->block_bytes()) + " of blocks, 1/" +
                               std::to_string(world.size()) + " kept; two blocks whole at a time)"
                         : std::string(", replicated"))
              << "; resident " << mb(peak) << ", " << mb(resident_activation)
              << " above the loop's start" << std::endl;
    std::cout << "loading: resident peak " << mb(load) << " per rank (max over ranks)"
              << (shards && ckpt ? "; each rank read and converted only its slice of the blocks"
                                 : std::string())
              << std::endl;
    j = {{"model", pipe->name()},
         {"preset", o.preset},
         {"dtype", models::dtype_name(dtype)},
         {"height", o.height},
         {"width", o.width},
         {"frames", o.frames},
         {"text_len", o.text_len},
         {"steps", o.steps},
         {"seed", o.seed},
         {"ranks", world.size()},
         {"ulysses", u},
         {"ring", r},
         {"cfg", o.cfg},
         {"cfg_scale", o.cfg_scale},
         {"parallel", o.parallel},
         {"threads_per_rank", o.threads},
         {"total_seconds", total},
         {"step_seconds", steps},
         {"median_step_seconds", median},
         {"tokens", shapes.tokens},
         {"tokens_per_rank", prediction.tokens_per_rank},
         {"comm_bytes_sent", sent},
         {"comm_bytes_predicted", predicted},
         {"peak_rss_bytes", peak},
         {"activation_peak_bytes", activation},
         {"activation_peak_bytes_per_rank", activations},
         {"loop_peak_bytes", loop},
         {"loop_peak_bytes_per_rank", loops},
         {"tensor_bytes_before_loop", tensors_before},
         {"weight_bytes", weight_bytes},
         {"shard_weights", shards != nullptr},
         {"resident_activation_peak_bytes", resident_activation},
         {"resident_activation_peak_bytes_per_rank", resident_activations},
         {"resident_before_loop_bytes", resident_before},
         {"load_peak_rss_bytes", load},
         {"load_peak_rss_bytes_per_rank", loads}};
    for (const auto& [k, b] : moved)
      j["comm_bytes_by_kind"][k] = {{"sent", b.sent}, {"received", b.received}};
    if (!o.out.empty()) {
      write_png(o.out, pipe->preview(x));
      std::cout << "wrote " << o.out << std::endl;
    }
  }
  if (shards && o.check) shards->unshard();  // every rank: the reference runs on rank 0 alone
  remove_sequence_parallel(pipe->model());
  if (o.check && lead) {
    // The same job on this one rank, without the plan: the reference.
    auto ref = denoise(*pipe, o, false, nullptr);
    code = report_parity(x, ref, models::tolerance_against_one_rank(dtype), j);
  }
  if (lead && !o.json.empty()) {
    std::ofstream f(o.json);
    f << j.dump(2) << "\n";
    f.close();
    if (!f)
      throw std::runtime_error("cannot write --json '" + o.json + "': " + std::strerror(errno));
  }
  return code;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("run", "Denoise with a reference DiT under sequence parallelism");
  static RunOptions o;
  add_model_flags(cmd, o.model, o.preset, o.height, o.width, o.frames, o.text_len, o.dtype);
  cmd->add_option("--nproc", o.nproc, "Start this many local ranks (default: U*R, or 2)")
      ->check(whole_number(1));
  cmd->add_flag("--oversubscribe", o.oversubscribe,
                "With --nproc: allow more than 4 ranks per usable core");
  cmd->add_option("--ulysses", o.ulysses, "Ulysses degree U")->check(whole_number(1));
  cmd->add_option("--ring", o.ring, "Ring degree R")->check(whole_number(1));
  cmd->add_option("--cfg-scale", o.cfg_scale,
                  "Classifier-free guidance scale: above 1, two forwards per step (prompt and "
                  "negative prompt); with a FLUX.1 --model-dir, diffusers' true_cfg_scale "
                  "(default: the folder's, else 1)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--cfg", o.cfg,
                  "CFG degree: 2 runs the two guidance branches at once on two halves of the ranks")
      ->check(CLI::IsMember({1, 2}))
      ->capture_default_str();
  cmd->add_option(
         "--parallel", o.parallel,
         "auto: choose cfg x ulysses x ring from the model, the size and the measured machine")
      ->check(CLI::IsMember({"auto", "manual"}))
      ->capture_default_str();
  cmd->add_option("--memory-per-rank", o.memory_per_rank,
                  "With --parallel auto: the memory a rank may use, BYTES (e.g. 8e9) or auto "
                  "(the memory available, shared by the local ranks; the default)");
  cmd->add_option("--model-dir", o.model_dir,
                  "A model folder as downloaded (diffusers layout, FLUX.1): run its whole pipeline")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", o.prompt, "With --model-dir: the prompt");
  cmd->add_option("--prompt-embeds", o.prompt_embeds,
                  "With --model-dir: prompt_embeds and pooled_prompt_embeds from a .safetensors "
                  "file (spdit encode); Qwen-Image: prompt_embeds[_mask] and "
                  "negative_prompt_embeds[_mask]")
      ->check(CLI::ExistingFile);
  cmd->add_option("--noise", o.noise,
                  "With --model-dir: the initial packed noise ('noise' in a .safetensors file)")
      ->check(CLI::ExistingFile);
  cmd->add_option(
      "--dump", o.dump,
      "With --model-dir: write embeddings, noise, final latents and pixels (.safetensors)");
  cmd->add_option(
         "--vae-parallel", o.vae_parallel,
         "With --model-dir and several ranks: split the autoencoder's decode by rows across them")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  cmd->add_flag(
      "--shard-weights", o.shard_weights,
      "Each rank keeps 1/P of every block's weights; a block's are all-gathered as it runs");
  cmd->add_option("--guidance", o.guidance,
                  "With --model-dir: FLUX.1-dev's embedded guidance; Wan's CFG scale (5); "
                  "Qwen-Image's true CFG scale (4)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option(
         "--max-sequence-length", o.max_sequence_length,
         "With --model-dir: T5's tokens (default: the folder's, else dev 512, schnell 256)")
      ->check(whole_number(1, 512));
  cmd->add_option("--steps", o.steps, "Denoising steps")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of weights, noise and text")
      ->check(whole_number(0))
      ->capture_default_str();
  cmd->add_option(
         "--weights", o.weights,
         "A checkpoint: a .safetensors file, its .index.json, or a (diffusers) model folder; "
         "it decides the model and its size")
      ->check(CLI::ExistingPath);
  cmd->add_option("--threads", o.threads, "Intra-op threads per rank")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--out", o.out, "Write a PNG preview of the final latents");
  cmd->add_option("--json", o.json, "Write the metrics as JSON");
  cmd->add_flag("--check", o.check, "Also run on one rank and compare (exit 1 on FAIL)");
  cmd->add_option("--negative-prompt", o.negative_prompt,
                  "With a Wan --model-dir: the negative prompt (default empty); Qwen-Image: "
                  "true CFG's negative prompt (none by default); FLUX.1: true CFG's "
                  "(default empty)");
  cmd->add_option("--scheduler", o.scheduler, "With a Wan --model-dir: unipc (Wan's own) or euler")
      ->check(CLI::IsMember({"unipc", "euler"}))
      ->capture_default_str();
  cmd->add_option("--fps", o.fps, "With a Wan --model-dir: the MP4's frame rate")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--frames-out", o.frames_out,
                  "With a Wan --model-dir: also write the frames as PNGs to this folder");
  cmd->callback([cmd, &action] {
    o.model_given = cmd->get_option("--model")->count() > 0;
    o.cfg_given = cmd->get_option("--cfg")->count() > 0;
    o.cfg_scale_given = cmd->get_option("--cfg-scale")->count() > 0;
    o.steps_given = cmd->get_option("--steps")->count() > 0;
    o.height_given = cmd->get_option("--height")->count() > 0;
    o.width_given = cmd->get_option("--width")->count() > 0;
    o.vae_parallel_given = cmd->get_option("--vae-parallel")->count() > 0;
    o.frames_given = cmd->get_option("--frames")->count() > 0;
    o.size_given =
        cmd->get_option("--height")->count() > 0 || cmd->get_option("--width")->count() > 0;
    o.guidance_given = cmd->get_option("--guidance")->count() > 0;
    o.negative_prompt_given = cmd->get_option("--negative-prompt")->count() > 0;
    if (o.size_given &&
        (cmd->get_option("--height")->count() == 0 || cmd->get_option("--width")->count() == 0) &&
        !o.model_dir.empty() && pipelines::WanFiles::is_wan_folder(o.model_dir)) {
      throw CLI::ValidationError("--height/--width",
                                 "a Wan video takes both --height and --width (e.g. 480 832)");
    }
    for (const char* f : {"--model", "--preset", "--weights", "--text-len"}) {
      o.weights_flags_given = o.weights_flags_given || cmd->get_option(f)->count() > 0;
    }
    action = [] {
      if (launched_by_launcher()) {
        if (o.nproc)
          throw std::invalid_argument("--nproc starts local ranks; under a launcher leave it out");
        return run_as_rank([](World& w) { return run_rank(w, o); });
      }
      // Before any rank starts: a bad output path fails now, not after the run.
      // (Under a launcher rank 0, which writes them, checks in run_rank.)
      check_can_write(o.out, "--out");
      check_can_write(o.json, "--json");
      const bool wan = !o.model_dir.empty() && pipelines::WanFiles::is_wan_folder(o.model_dir);
      const bool qwen =
          !o.model_dir.empty() && pipelines::QwenImageFiles::is_qwen_image_folder(o.model_dir);
      int n = o.nproc                 ? o.nproc
              : (o.ulysses || o.ring) ? o.cfg * std::max(1, o.ulysses) * std::max(1, o.ring)
                                      : 2;
      // A FLUX.1 folder may bring its own true CFG scale: checked by each rank.
      if (o.model_dir.empty()) check_guidance_flags(o, n);
      if (n == 1) return run_as_rank([](World& w) { return run_rank(w, o); });
      return relaunch_self_with_ranks(n, "--nproc", o.oversubscribe);
    };
  });
}

}  // namespace spdit::cli
