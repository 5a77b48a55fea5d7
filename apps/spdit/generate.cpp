#include "generate.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>

#include "commands.h"
#include "decode_bands.h"
#include "mp4_writer.h"
#include "output_paths.h"
#include "parity_report.h"
#include "pipeline_inputs.h"
#include "png_writer.h"
#include "qwen_encode.h"
#include "rank_setup.h"
#include "run_report.h"
#include "spdit/checkpoints/checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/flux_image_pipeline.h"
#include "spdit/pipelines/qwen_image_pipeline.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "spdit/sharding/sharded_weights.h"
#include "validators.h"

namespace spdit::cli {
namespace {

pipelines::FluxPrompt prompt_from_file(const std::string& file, const std::string& prefix = "") {
  return {tensor_from(file, prefix + "prompt_embeds"),
          tensor_from(file, prefix + "pooled_prompt_embeds")};
}

bool file_has(const std::string& file, const std::string& name) {
  return checkpoints::Checkpoint::open(file).has(name);
}

// True CFG's negative prompt, when the run has one: the text (empty unless
// given) through the encoders, or a --prompt-embeds file's negative_*
// tensors. A folder's default scale with a file that has no negatives runs
// without true CFG (said); an asked-for scale is refused instead.
std::optional<pipelines::FluxPrompt> negative_prompt(pipelines::FluxImagePipeline& flux,
                                                     GenerateOptions& o, bool scale_asked,
                                                     bool lead) {
  if (o.negative_prompt_given && !(o.true_cfg_scale > 1)) {
    throw std::invalid_argument(
        "--negative-prompt is true CFG's: give --cfg-scale above 1 with it (FLUX.1's "
        "--guidance is the embedded guidance, which takes no negative prompt)");
  }
  if (!(o.true_cfg_scale > 1)) return std::nullopt;
  if (o.prompt_embeds.empty()) return flux.encode(o.negative_prompt);
  if (o.negative_prompt_given) {
    throw std::invalid_argument(
        "--negative-prompt is text for the encoders; with --prompt-embeds the negative prompt is "
        "the file's negative_prompt_embeds and negative_pooled_prompt_embeds");
  }
  if (file_has(o.prompt_embeds, "negative_prompt_embeds") || scale_asked)
    return prompt_from_file(o.prompt_embeds, "negative_");  // throws naming what is missing
  if (lead) {
    std::cout << "spdit run: '" << o.prompt_embeds
              << "' has no negative_prompt_embeds: no true CFG (the folder's default scale "
              << o.true_cfg_scale << " needs them)" << std::endl;
  }
  o.true_cfg_scale = 1;
  return std::nullopt;
}

void write_image(const std::string& path, const at::Tensor& pixels) {  // (1, H, W, 3) uint8
  write_png(path, pixels[0].permute({2, 0, 1}).to(at::kFloat) / 255.0, 1);
}

// Settings left at 0 take the folder's _spdit_run_defaults (a trained demo
// runs at the size and T5 length it learned), else the published defaults.
GenerateOptions with_folder_defaults(GenerateOptions o, const pipelines::ModelDir& dir) {
  auto take = [&](auto& value, const char* key, int64_t fallback) {
    if (value > 0) return;
    value = static_cast<std::remove_reference_t<decltype(value)>>(
        dir.run_default(key, static_cast<double>(fallback)));
  };
  take(o.height, "height", 1024);
  take(o.width, "width", 1024);
  take(o.steps, "steps", 0);  // 0: the variant's
  take(o.max_sequence_length, "max_sequence_length", 0);
  // Not given (< 0) only: --cfg-scale 0 means off, not "the folder's".
  if (o.true_cfg_scale < 0) o.true_cfg_scale = dir.run_default("true_cfg_scale", 1.0);
  return o;
}

}  // namespace

int generate_rank(World& world, const GenerateOptions& given) {
  set_threads_per_rank(given.threads);
  const bool lead = world.rank() == 0;
  if (lead) {
    check_can_write(given.out, "--out");
    check_can_write(given.json, "--json");
    check_can_write(given.dump, "--dump");
  }
  if (given.prompt.empty() == given.prompt_embeds.empty()) {
    throw std::invalid_argument(
        "--model-dir needs the prompt: --prompt TEXT, or --prompt-embeds FILE (from spdit "
        "encode or another implementation) -- one of them");
  }
  auto [u, r] = resolve_degrees(world.size(), given.ulysses, given.ring, given.cfg);
  const auto dir = pipelines::ModelDir::open(given.model_dir);
  GenerateOptions o = with_folder_defaults(given, dir);
  check_ranks_agree(world, {{"--model-dir", o.model_dir},
                            {"--prompt", o.prompt},
                            {"--prompt-embeds", o.prompt_embeds},
                            {"--noise", o.noise},
                            {"--height", std::to_string(o.height)},
                            {"--width", std::to_string(o.width)},
                            {"--steps", std::to_string(o.steps)},
                            {"--max-sequence-length", std::to_string(o.max_sequence_length)},
                            {"--seed", std::to_string(o.seed)},
                            {"--guidance", std::to_string(o.guidance)},
                            {"--cfg-scale", std::to_string(o.true_cfg_scale)},
                            {"--negative-prompt", o.negative_prompt},
                            {"--cfg", std::to_string(o.cfg)},
                            {"--ulysses", std::to_string(u)},
                            {"--ring", std::to_string(r)},
                            {"--dtype", o.dtype},
                            {"--vae-parallel", o.vae_parallel ? "on" : "off"},
                            {"--shard-weights", o.shard_weights ? "on" : "off"}});
  const Progress progress{lead};
  auto t0 = Clock::now();
  const auto dtype = o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype);
  // Sharded, each rank later reads only its slice of the transformer's blocks.
  const bool shard = o.shard_weights && world.size() > 1;
  pipelines::FluxImagePipeline flux(dir, dtype, /*with_text=*/!o.prompt.empty(), shard);
  if (o.max_sequence_length > 0) flux.set_max_sequence_length(o.max_sequence_length);
  PhaseSeconds seconds;
  seconds.load = since(t0);
  progress.phase("load", seconds.load);

  // Every rank encodes the prompt (the encoders' weights are file pages the
  // ranks share; the result is the same on each), so no broadcast is needed.
  t0 = Clock::now();
  const auto prompt = o.prompt.empty() ? prompt_from_file(o.prompt_embeds) : flux.encode(o.prompt);
  const auto negative = negative_prompt(flux, o, given.true_cfg_scale >= 0, lead);
  if (o.cfg == 2 && !negative) {
    throw std::invalid_argument(
        "--cfg 2 runs true CFG's two branches at once; this run has no true CFG (--cfg-scale " +
        std::to_string(o.true_cfg_scale) + "): give --cfg-scale above 1, or leave --cfg out");
  }
  seconds.encode = since(t0);
  progress.phase("encode", seconds.encode);

  const auto grid = flux.grid(o.height, o.width);
  const auto noise =
      o.noise.empty() ? flux.initial_noise(grid, o.seed) : tensor_from(o.noise, "noise");
  const int64_t steps = o.steps > 0 ? o.steps : flux.has_guidance_embedder() ? 28 : 4;
  if (lead) {
    std::cout << "spdit run: " << o.model_dir << " (flux " << flux.transformer_info().variant
              << ", " << models::dtype_name(flux.dtype()) << ") " << grid.image_height() << "x"
              << grid.image_width() << ", " << steps << " steps, "
              << (negative ? "true CFG " + c10::str(o.true_cfg_scale) : std::string("no true CFG"))
              << ", " << world.size() << " rank(s) (" << (o.cfg == 2 ? "cfg 2 x " : "")
              << "ulysses " << u << " x ring " << r << ")" << std::endl;
  }
  SequenceParallelConfig cfg{u, r};
  cfg.cfg_degree = o.cfg;
  cfg.setup(world);
  const pipelines::FluxTrueCfg true_cfg{negative ? &*negative : nullptr, o.true_cfg_scale,
                                        &cfg.state()};
  apply_sequence_parallel(flux.transformer(), cfg);
  std::unique_ptr<ShardedWeights> shards;
  if (shard) shards = flux.shard_transformer(new_shard_group(world));
  t0 = Clock::now();
  auto last = Clock::now();
  auto latents =
      flux.denoise(noise, prompt, grid, steps, o.guidance, true_cfg, [&](int64_t i, int64_t n) {
        seconds.steps.push_back(since(last));
        last = Clock::now();
        progress.step(i, n, seconds.steps.back());
      });
  seconds.denoise = since(t0);
  if (shards && o.check) shards->unshard();  // every rank: rank 0's reference runs alone
  remove_sequence_parallel(flux.transformer());
  world.barrier();

  // Every rank holds the final latents: with several ranks each decodes a
  // band of rows (row_bands.h) and all get the picture; otherwise rank 0
  // decodes alone.
  const auto bands = decode_bands(world, o.vae_parallel);
  int code = 0;
  at::Tensor pixels;
  if (lead || bands) {
    t0 = Clock::now();
    pixels = flux.decode(latents, grid, bands.get());
    seconds.decode = since(t0);
  }
  if (lead) {
    progress.phase(decode_phase_name(bands.get()), seconds.decode);
    nlohmann::json j = {{"model_dir", o.model_dir},
                        {"variant", flux.transformer_info().variant},
                        {"dtype", models::dtype_name(flux.dtype())},
                        {"height", grid.image_height()},
                        {"width", grid.image_width()},
                        {"steps", steps},
                        {"seed", o.seed},
                        {"guidance", o.guidance},
                        {"true_cfg_scale", negative ? o.true_cfg_scale : 1.0},
                        {"cfg", o.cfg}};
    j.update(run_report(world.size(), u, r, seconds, bands.get()));
    if (!o.out.empty()) {
      write_image(o.out, pixels);
      std::cout << "wrote " << o.out << std::endl;
    }
    if (!o.dump.empty()) {
      std::map<std::string, at::Tensor> dump = {
          {"prompt_embeds", prompt.prompt_embeds.contiguous()},
          {"pooled_prompt_embeds", prompt.pooled_prompt_embeds.contiguous()},
          {"noise", noise.contiguous()},
          {"latents", latents.contiguous()},
          {"image", pixels.contiguous()}};
      if (negative) {
        dump["negative_prompt_embeds"] = negative->prompt_embeds.contiguous();
        dump["negative_pooled_prompt_embeds"] = negative->pooled_prompt_embeds.contiguous();
      }
      checkpoints::write_safetensors(o.dump, dump);
      std::cout << "wrote " << o.dump << " (prompt_embeds, pooled_prompt_embeds"
                << (negative ? ", their negative_ pair" : "") << ", noise, latents, image)"
                << std::endl;
    }
    if (o.check) {
      // The same job on this one rank, the plan removed, true CFG serial:
      // the reference. Guidance scales the branches' rounding differences.
      auto ref = flux.denoise(noise, prompt, grid, steps, o.guidance,
                              {true_cfg.negative, true_cfg.scale, nullptr});
      code = report_parity(
          latents, ref,
          models::tolerance_against_one_rank(flux.dtype()) * (negative ? o.true_cfg_scale : 1.0),
          j);
    }
    print_phase_seconds(seconds);
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << j.dump(2) << "\n";
      if (!f.flush()) throw std::runtime_error("cannot write --json '" + o.json + "'");
    }
  }
  // No barrier here: the others would wait (and time out) through rank 0's
  // decode and one-rank --check, which need nothing from them.
  return code;
}

namespace {

// A --dump's packed latents (1, tokens, C) for a height x width picture
// (FLUX.1 and Qwen-Image alike), or an error naming the size they fit.
at::Tensor packed_latents(const std::string& file, const pipelines::FluxLatentGrid& grid,
                          int64_t height, int64_t width) {
  auto x = tensor_from(file, "latents");
  if (x.dim() != 3 || x.size(1) != grid.tokens()) {
    throw std::invalid_argument("'" + file + "' latents are " + std::string(c10::str(x.sizes())) +
                                "; a " + std::to_string(height) + "x" + std::to_string(width) +
                                " image has " + std::to_string(grid.tokens()) +
                                " packed tokens: give the size it was made at");
  }
  return x;
}

}  // namespace

void add_encode_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "encode", "A prompt to FLUX.1's, Wan2.1's or Qwen-Image's text embeddings (safetensors)");
  static std::string dir, prompt, out, negative;
  cmd->add_option("--model-dir", dir, "The model folder (diffusers layout)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", prompt, "The prompt")->required();
  cmd->add_option("--out", out,
                  "The .safetensors file to write (prompt_embeds, pooled_prompt_embeds)")
      ->required();
  cmd->add_option("--negative-prompt", negative,
                  "Wan2.1: the negative prompt (negative_prompt_embeds; default empty); "
                  "Qwen-Image: negative_prompt_embeds and _mask when given");
  cmd->callback([cmd, &action] {
    const bool negative_given = cmd->get_option("--negative-prompt")->count() > 0;
    action = [negative_given] {
      check_can_write(out, "--out");
      if (is_qwen_image_text_folder(dir))  // Qwen2.5-VL: prompt_embeds and prompt_embeds_mask
        return encode_qwen_image_prompt(dir, prompt, negative_given ? &negative : nullptr, out);
      if (pipelines::QwenImageFiles::is_qwen_image_folder(dir)) {  // embeddings and masks
        auto encoder = pipelines::require_qwen_prompt_encoder(pipelines::QwenImageFiles::find(dir));
        std::map<std::string, at::Tensor> t;
        for (const auto& [prefix, text] :
             {std::pair<std::string, std::string>{"", prompt},
              std::pair<std::string, std::string>{"negative_", negative}}) {
          if (!prefix.empty() && !negative_given) continue;  // diffusers: no negative, no true CFG
          const auto e = encoder->encode(text);
          t[prefix + "prompt_embeds"] = e.embeds.contiguous();
          if (e.mask.defined()) t[prefix + "prompt_embeds_mask"] = e.mask.contiguous();
        }
        checkpoints::write_safetensors(out, t);
        std::cout << "wrote " << out << ": prompt_embeds " << t["prompt_embeds"].sizes()
                  << std::endl;
        return 0;
      }
      if (pipelines::WanFiles::is_wan_folder(
              dir)) {  // umT5: prompt_embeds and negative_prompt_embeds
        pipelines::WanVideoPipeline wan(pipelines::WanFiles::find(dir));
        const auto p = wan.encode(prompt), n = wan.encode(negative);
        checkpoints::write_safetensors(
            out, {{"prompt_embeds", p.contiguous()}, {"negative_prompt_embeds", n.contiguous()}});
        std::cout << "wrote " << out << ": prompt_embeds " << p.sizes()
                  << ", negative_prompt_embeds " << n.sizes() << std::endl;
        return 0;
      }
      pipelines::FluxImagePipeline flux(pipelines::ModelDir::open(dir));
      const auto p = flux.encode(prompt);
      checkpoints::write_safetensors(
          out, {{"prompt_embeds", p.prompt_embeds.contiguous()},
                {"pooled_prompt_embeds", p.pooled_prompt_embeds.contiguous()}});
      std::cout << "wrote " << out << ": prompt_embeds " << p.prompt_embeds.sizes()
                << ", pooled_prompt_embeds " << p.pooled_prompt_embeds.sizes() << std::endl;
      return 0;
    };
  });
}

void add_decode_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand(
      "decode", "FLUX.1's packed latents (safetensors) to a PNG; Wan2.1's to an MP4");
  static std::string dir, latents, out;
  static int64_t height = 1024, width = 1024;
  static int fps = 16;
  cmd->add_option("--model-dir", dir, "The model folder (diffusers layout)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--latents", latents,
                  "A .safetensors file holding 'latents' (1, tokens, 64), as --dump writes")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--height", height, "Image height")
      ->check(whole_number(16))
      ->capture_default_str();
  cmd->add_option("--width", width, "Image width")->check(whole_number(16))->capture_default_str();
  cmd->add_option("--out", out, "The PNG (FLUX.1) or MP4 (Wan2.1) to write")->required();
  cmd->add_option("--fps", fps, "Wan2.1: the MP4's frame rate")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->callback([&action] {
    action = [] {
      check_can_write(out, "--out");
      if (pipelines::QwenImageFiles::is_qwen_image_folder(dir)) {  // packed, as FLUX.1's
        pipelines::QwenImagePipeline qwen(pipelines::QwenImageFiles::find(dir),
                                          at::ScalarType::Undefined, false);
        const auto grid = qwen.grid(height, width);
        const auto x = packed_latents(latents, grid, height, width);
        write_image(out, qwen.decode(x, grid));
        std::cout << "wrote " << out << std::endl;
        return 0;
      }
      if (pipelines::WanFiles::is_wan_folder(
              dir)) {  // (1, 16, T, h, w) latents, the size is theirs
        pipelines::WanVideoPipeline wan(pipelines::WanFiles::find(dir), at::ScalarType::Undefined,
                                        false);
        auto x = tensor_from(latents, "latents");
        if (x.dim() != 5) {
          throw std::invalid_argument("'" + latents + "' latents are " +
                                      std::string(c10::str(x.sizes())) +
                                      "; Wan's are (1, 16, T, h, w), as --dump writes them");
        }
        const auto frames = wan.decode(x);
        write_mp4(out, frames, fps);
        std::cout << "wrote " << out << " (" << frames.size(0) << " frames)" << std::endl;
        return 0;
      }
      pipelines::FluxImagePipeline flux(pipelines::ModelDir::open(dir), at::ScalarType::Undefined,
                                        false);
      const auto grid = flux.grid(height, width);
      const auto x = packed_latents(latents, grid, height, width);
      write_image(out, flux.decode(x, grid));
      std::cout << "wrote " << out << std::endl;
      return 0;
    };
  });
}

}  // namespace spdit::cli
