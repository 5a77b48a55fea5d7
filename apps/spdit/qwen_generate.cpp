#include "qwen_generate.h"

#include <unistd.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "decode_bands.h"
#include "output_paths.h"
#include "parity_report.h"
#include "pipeline_inputs.h"
#include "png_writer.h"
#include "rank_setup.h"
#include "run_report.h"
#include "spdit/checkpoints/checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/qwen_image_pipeline.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::cli {
namespace {

// `name` and its optional `name`_mask from a --prompt-embeds file; embeds
// undefined when the file has no `name` and it is optional.
pipelines::QwenPromptEmbeds embeds_from(const std::string& file, const std::string& name,
                                        bool required) {
  auto ckpt = checkpoints::Checkpoint::open(file);
  if (!ckpt.has(name)) {
    if (required) tensor_from(file, name);  // throws naming what the file holds
    return {};
  }
  pipelines::QwenPromptEmbeds p{ckpt.tensor(name).clone(), {}};
  if (ckpt.has(name + "_mask")) p.mask = ckpt.tensor(name + "_mask").clone();
  return p;
}

}  // namespace

int qwen_generate_rank(World& world, const QwenGenerateOptions& o) {
  set_threads_per_rank(o.threads);
  const bool lead = world.rank() == 0;
  const Progress progress{lead};
  if (lead) {
    check_can_write(o.out, "--out");
    check_can_write(o.json, "--json");
    check_can_write(o.dump, "--dump");
  }
  if (o.prompt.empty() == o.prompt_embeds.empty()) {
    throw std::invalid_argument(
        "--model-dir needs the prompt: --prompt TEXT, or --prompt-embeds FILE (prompt_embeds "
        "[, prompt_embeds_mask, negative_prompt_embeds, negative_prompt_embeds_mask] from --dump "
        "or another implementation) -- one of them");
  }
  if (!o.prompt_embeds.empty() && o.negative_prompt_given) {
    throw std::invalid_argument(
        "--negative-prompt is text for the encoder; with --prompt-embeds the negative prompt is "
        "the file's negative_prompt_embeds");
  }
  auto [u, r] = resolve_degrees(world.size(), o.ulysses, o.ring, o.cfg);
  check_ranks_agree(world, {{"--model-dir", o.model_dir},
                            {"--prompt", o.prompt},
                            {"--negative-prompt", o.negative_prompt},
                            {"--prompt-embeds", o.prompt_embeds},
                            {"--noise", o.noise},
                            {"--height", std::to_string(o.height)},
                            {"--width", std::to_string(o.width)},
                            {"--steps", std::to_string(o.steps)},
                            {"--vae-parallel", o.vae_parallel ? "on" : "off"},
                            {"--shard-weights", o.shard_weights ? "on" : "off"},
                            {"--seed", std::to_string(o.seed)},
                            {"--guidance", std::to_string(o.guidance)},
                            {"--cfg", std::to_string(o.cfg)},
                            {"--ulysses", std::to_string(u)},
                            {"--ring", std::to_string(r)},
                            {"--dtype", o.dtype}});
  auto t0 = Clock::now();
  const auto files = pipelines::QwenImageFiles::find(o.model_dir);
  const auto dtype = o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype);
  pipelines::QwenImagePipeline qwen(files, dtype, /*with_text=*/!o.prompt.empty());
  const auto grid = qwen.grid(o.height, o.width);
  const double load_s = since(t0);
  progress.phase("load", load_s);

  // Every rank encodes (or reads) the prompt: the result is the same on each.
  t0 = Clock::now();
  pipelines::QwenImagePrompts prompts;
  if (o.prompt.empty()) {
    prompts.prompt = embeds_from(o.prompt_embeds, "prompt_embeds", true);
    prompts.negative = embeds_from(o.prompt_embeds, "negative_prompt_embeds", false);
  } else {
    prompts.prompt = qwen.encode(o.prompt);
    if (o.negative_prompt_given) prompts.negative = qwen.encode(o.negative_prompt);
  }
  const bool guided = o.guidance > 1 && prompts.negative.embeds.defined();
  if (o.cfg == 2 && !guided) {
    throw std::invalid_argument(
        "--cfg 2 runs true CFG's two branches at once; it needs a negative prompt (" +
        std::string(o.prompt.empty() ? "negative_prompt_embeds in the --prompt-embeds file"
                                     : "--negative-prompt") +
        ") and --guidance above 1: leave --cfg out");
  }
  const double encode_s = since(t0);
  progress.phase("encode", encode_s);

  const auto noise =
      o.noise.empty() ? qwen.initial_noise(grid, o.seed) : tensor_from(o.noise, "noise");
  if (lead) {
    std::cout << "spdit run: " << o.model_dir << " (qwen-image, "
              << models::dtype_name(qwen.dtype()) << ") " << grid.image_height() << "x"
              << grid.image_width() << ", " << o.steps << " steps, "
              << (guided ? "true CFG " + std::to_string(o.guidance) : std::string("no CFG")) << ", "
              << world.size() << " rank(s) (" << (o.cfg == 2 ? "cfg 2 x " : "") << "ulysses " << u
              << " x ring " << r << ")" << std::endl;
  }
  SequenceParallelConfig cfg{u, r};
  cfg.cfg_degree = o.cfg;
  cfg.setup(world);
  apply_sequence_parallel(qwen.transformer(), cfg);
  std::unique_ptr<ShardedWeights> shards;
  if (o.shard_weights && world.size() > 1) {
    shards = std::make_unique<ShardedWeights>(qwen.transformer(), new_shard_group(world));
  }
  t0 = Clock::now();
  auto last = Clock::now();
  std::vector<double> step_seconds;
  auto latents = qwen.denoise(
      noise, prompts, grid, o.steps, o.guidance, &cfg.state(), [&](int64_t i, int64_t n) {
        step_seconds.push_back(since(last));
        last = Clock::now();
        if (lead) {
          const int width = 24, done = static_cast<int>(i * width / n);
          std::cerr << "[" << std::string(done, '#') << std::string(width - done, '.') << "] step "
                    << i << "/" << n << "  " << std::fixed << std::setprecision(3)
                    << step_seconds.back() << " s" << (isatty(STDERR_FILENO) ? "\r" : "\n")
                    << std::flush;
          if (i == n && isatty(STDERR_FILENO)) std::cerr << "\n";
        }
      });
  const double denoise_s = since(t0);
  if (shards && o.check) shards->unshard();  // every rank: rank 0's reference runs alone
  remove_sequence_parallel(qwen.transformer());
  world.barrier();

  // Every rank holds the final latents: with several ranks each decodes a
  // band of rows (row_bands.h) and all get the picture; else rank 0 alone.
  const auto bands = decode_bands(world, o.vae_parallel);
  const bool banded = bands != nullptr;
  at::Tensor pixels;
  double decode_s = 0;
  if (lead || banded) {
    t0 = Clock::now();
    pixels = qwen.decode(latents, grid, bands.get());
    decode_s = since(t0);
  }
  int code = 0;
  if (lead) {
    progress.phase(decode_phase_name(bands.get()), decode_s);
    nlohmann::json j = {{"model_dir", o.model_dir},
                        {"model", "qwen-image"},
                        {"dtype", models::dtype_name(qwen.dtype())},
                        {"height", pixels.size(1)},
                        {"width", pixels.size(2)},
                        {"steps", o.steps},
                        {"seed", o.seed},
                        {"true_cfg_scale", o.guidance},
                        {"true_cfg", guided},
                        {"ranks", world.size()},
                        {"cfg", o.cfg},
                        {"ulysses", u},
                        {"ring", r},
                        {"load_seconds", load_s},
                        {"encode_seconds", encode_s},
                        {"denoise_seconds", denoise_s},
                        {"decode_seconds", decode_s},
                        {"decode_ranks", banded ? world.size() : 1},
                        {"step_seconds", step_seconds}};
    t0 = Clock::now();
    if (!o.out.empty()) {
      write_png(o.out, pixels[0].permute({2, 0, 1}).to(at::kFloat) / 255.0, 1);
      std::cout << "wrote " << o.out << " (" << pixels.size(2) << "x" << pixels.size(1) << " PNG)"
                << std::endl;
    }
    if (!o.dump.empty()) {
      std::map<std::string, at::Tensor> dump = {{"prompt_embeds", prompts.prompt.embeds},
                                                {"noise", noise},
                                                {"latents", latents},
                                                {"image", pixels}};
      if (prompts.prompt.mask.defined()) dump["prompt_embeds_mask"] = prompts.prompt.mask;
      if (prompts.negative.embeds.defined()) {
        dump["negative_prompt_embeds"] = prompts.negative.embeds;
        if (prompts.negative.mask.defined())
          dump["negative_prompt_embeds_mask"] = prompts.negative.mask;
      }
      for (auto& [name, t] : dump) t = t.contiguous();
      checkpoints::write_safetensors(o.dump, dump);
      std::cout << "wrote " << o.dump << " (prompt_embeds, negative_prompt_embeds, noise, latents, "
                << "image)" << std::endl;
    }
    const double write_s = since(t0);
    j["write_seconds"] = write_s;
    if (o.check) {
      // The same job on this one rank, the plan removed, guidance serial: the
      // reference.
      auto ref = qwen.denoise(noise, prompts, grid, o.steps, o.guidance, nullptr);
      // True CFG multiplies each branch's rounding differences by up to the
      // scale (uncond + s (cond - uncond)): the tolerance grows with it. In
      // bf16 at scale 4 the one-rank and SP runs are ~1e-2 apart for that
      // reason alone (fp32: ~1e-6).
      const double tol =
          models::tolerance_against_one_rank(qwen.dtype()) * (guided ? o.guidance : 1.0);
      code = report_parity(latents, ref, tol, j);
    }
    std::cout << "load " << std::fixed << std::setprecision(3) << load_s << " s, encode "
              << encode_s << " s, denoise " << denoise_s << " s, decode " << decode_s
              << " s, write " << write_s << " s" << std::endl;
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << j.dump(2) << "\n";
      if (!f.flush()) throw std::runtime_error("cannot write --json '" + o.json + "'");
    }
  }
  return code;
}

}  // namespace spdit::cli
