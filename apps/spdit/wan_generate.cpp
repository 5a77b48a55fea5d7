#include "wan_generate.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "decode_bands.h"
#include "mp4_writer.h"
#include "output_paths.h"
#include "parity_report.h"
#include "pipeline_inputs.h"
#include "png_writer.h"
#include "rank_setup.h"
#include "run_report.h"
#include "spdit/checkpoints/checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "spdit/sharding/sharded_weights.h"

namespace spdit::cli {
namespace {

void write_frames(const std::string& dir,
                  const at::Tensor& frames) {  // (F, H, W, 3) uint8
  ::mkdir(dir.c_str(), 0755);
  for (int64_t i = 0; i < frames.size(0); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/frame_%04ld.png", static_cast<long>(i));
    write_png(dir + name, frames[i].permute({2, 0, 1}).to(at::kFloat) / 255.0, 1);
  }
}

}  // namespace

int wan_generate_rank(World& world, const WanGenerateOptions& o) {
  set_threads_per_rank(o.threads);
  const bool lead = world.rank() == 0;
  if (lead) {
    check_can_write(o.out, "--out");
    check_can_write(o.json, "--json");
    check_can_write(o.dump, "--dump");
  }
  if (o.prompt.empty() == o.prompt_embeds.empty()) {
    throw std::invalid_argument(
        "--model-dir needs the prompt: --prompt TEXT, "
        "or --prompt-embeds FILE (from --dump "
        "or another implementation) -- one of them");
  }
  if (o.cfg == 2 && !(o.guidance > 1)) {
    throw std::invalid_argument("--cfg 2 runs the two guidance branches at once; with --guidance " +
                                std::to_string(o.guidance) +
                                " (<= 1) there is one branch: leave --cfg out");
  }
  const auto scheduler = pipelines::parse_wan_scheduler(o.scheduler);
  auto [u, r] = resolve_degrees(world.size(), o.ulysses, o.ring, o.cfg);
  check_ranks_agree(world, {{"--model-dir", o.model_dir},
                            {"--prompt", o.prompt},
                            {"--negative-prompt", o.negative_prompt},
                            {"--prompt-embeds", o.prompt_embeds},
                            {"--noise", o.noise},
                            {"--height", std::to_string(o.height)},
                            {"--width", std::to_string(o.width)},
                            {"--frames", std::to_string(o.frames)},
                            {"--steps", std::to_string(o.steps)},
                            {"--vae-parallel", o.vae_parallel ? "on" : "off"},
                            {"--shard-weights", o.shard_weights ? "on" : "off"},
                            {"--seed", std::to_string(o.seed)},
                            {"--guidance", std::to_string(o.guidance)},
                            {"--scheduler", o.scheduler},
                            {"--cfg", std::to_string(o.cfg)},
                            {"--ulysses", std::to_string(u)},
                            {"--ring", std::to_string(r)},
                            {"--dtype", o.dtype}});
  const Progress progress{lead};
  auto t0 = Clock::now();
  const auto files = pipelines::WanFiles::find(o.model_dir);
  const auto dtype = o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype);
  // Sharded, each rank later reads only its slice of the transformer's blocks.
  const bool shard = o.shard_weights && world.size() > 1;
  pipelines::WanVideoPipeline wan(files, dtype, /*with_text=*/!o.prompt.empty(), shard);
  const auto shape =
      wan.latent_shape(o.frames, o.height, o.width);  // refuses a bad size before encoding
  PhaseSeconds seconds;
  seconds.load = since(t0);
  progress.phase("load", seconds.load);

  // Every rank encodes (the encoder's weights are file pages the ranks
  // share; the result is the same on each), so nothing is broadcast.
  t0 = Clock::now();
  const bool guided = o.guidance > 1;
  pipelines::WanPrompts prompts;
  if (o.prompt.empty()) {
    prompts.prompt_embeds = tensor_from(o.prompt_embeds, "prompt_embeds");
    if (guided)
      prompts.negative_prompt_embeds = tensor_from(o.prompt_embeds, "negative_prompt_embeds");
  } else {
    prompts.prompt_embeds = wan.encode(o.prompt);
    if (guided) prompts.negative_prompt_embeds = wan.encode(o.negative_prompt);
  }
  seconds.encode = since(t0);
  progress.phase("encode", seconds.encode);

  const auto noise =
      o.noise.empty() ? wan.initial_noise(shape, o.seed) : tensor_from(o.noise, "noise");
  if (lead) {
    std::cout << "spdit run: " << o.model_dir << " (wan " << wan.transformer_info().variant << ", "
              << files.layout << ", " << models::dtype_name(wan.dtype()) << ") " << o.frames
              << " frames " << o.height << "x" << o.width << ", " << o.steps << " steps "
              << o.scheduler << ", guidance " << o.guidance << ", " << world.size() << " rank(s) ("
              << (o.cfg == 2 ? "cfg 2 x " : "") << "ulysses " << u << " x ring " << r << ")"
              << std::endl;
  }
  SequenceParallelConfig cfg{u, r};
  cfg.cfg_degree = o.cfg;
  cfg.setup(world);
  apply_sequence_parallel(wan.transformer(), cfg);
  std::unique_ptr<ShardedWeights> shards;
  if (shard) shards = wan.shard_transformer(new_shard_group(world));
  t0 = Clock::now();
  auto last = Clock::now();
  auto latents = wan.denoise(noise, prompts, o.steps, o.guidance, scheduler, &cfg.state(),
                             [&](int64_t i, int64_t n) {
                               seconds.steps.push_back(since(last));
                               last = Clock::now();
                               progress.step(i, n, seconds.steps.back());
                             });
  seconds.denoise = since(t0);
  if (shards && o.check) shards->unshard();  // every rank: rank 0's reference runs alone
  remove_sequence_parallel(wan.transformer());
  world.barrier();

  // Every rank holds the final latents: with several ranks each decodes a
  // band of rows (row_bands.h) and all get the video; otherwise rank 0
  // decodes alone.
  const auto bands = decode_bands(world, o.vae_parallel);
  at::Tensor frames;
  if (lead || bands) {
    t0 = Clock::now();
    frames = wan.decode(latents, bands.get());
    seconds.decode = since(t0);
  }
  int code = 0;
  if (lead) {
    progress.phase(decode_phase_name(bands.get()), seconds.decode);
    nlohmann::json j = {{"model_dir", o.model_dir},
                        {"layout", files.layout},
                        {"variant", wan.transformer_info().variant},
                        {"dtype", models::dtype_name(wan.dtype())},
                        {"frames", frames.size(0)},
                        {"height", frames.size(1)},
                        {"width", frames.size(2)},
                        {"steps", o.steps},
                        {"scheduler", o.scheduler},
                        {"seed", o.seed},
                        {"guidance", o.guidance},
                        {"cfg", o.cfg}};
    j.update(run_report(world.size(), u, r, seconds, bands.get()));
    t0 = Clock::now();
    if (!o.out.empty()) {
      write_mp4(o.out, frames, o.fps);
      std::cout << "wrote " << o.out << " (" << frames.size(0) << " frames, " << o.fps << " fps)"
                << std::endl;
    }
    if (!o.frames_out.empty()) {
      write_frames(o.frames_out, frames);
      std::cout << "wrote " << frames.size(0) << " PNG frames to " << o.frames_out << std::endl;
    }
    if (!o.dump.empty()) {
      std::map<std::string, at::Tensor> dump = {
          {"prompt_embeds", prompts.prompt_embeds.contiguous()},
          {"noise", noise.contiguous()},
          {"latents", latents.contiguous()},
          {"video", frames.contiguous()}};
      if (prompts.negative_prompt_embeds.defined())
        dump["negative_prompt_embeds"] = prompts.negative_prompt_embeds.contiguous();
      checkpoints::write_safetensors(o.dump, dump);
      std::cout << "wrote " << o.dump
                << " (prompt_embeds, negative_prompt_embeds, noise, latents, video)" << std::endl;
    }
    const double write_s = since(t0);
    j["write_seconds"] = write_s;
    if (o.check) {
      // The same job on this one rank, the plan removed, guidance serial: the
      // reference.
      auto ref = wan.denoise(noise, prompts, o.steps, o.guidance, scheduler, nullptr);
      code = report_parity(latents, ref, models::tolerance_against_one_rank(wan.dtype()), j);
    }
    std::ostringstream write;
    write << ", write " << std::fixed << std::setprecision(3) << write_s << " s";
    print_phase_seconds(seconds, write.str());
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << j.dump(2) << "\n";
      if (!f.flush()) throw std::runtime_error("cannot write --json '" + o.json + "'");
    }
  }
  return code;
}

}  // namespace spdit::cli
