// `spdit serve` on a Wan2.1 folder: videos (MP4), as `spdit run --model-dir`
// makes them.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "mp4_writer.h"
#include "serve_loop.h"
#include "serve_model.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/wan_video_pipeline.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;

// FFmpeg's muxer writes a file: the MP4 goes through one in $TMPDIR, read
// back and removed.
std::string mp4_bytes(const at::Tensor& frames, int fps, uint64_t job_id) {
  const char* dir = std::getenv("TMPDIR");
  const std::string path = std::string(dir && *dir ? dir : "/tmp") + "/spdit-serve-" +
                           std::to_string(getpid()) + "-" + std::to_string(job_id) + ".mp4";
  write_mp4(path, frames, fps);
  std::ifstream f(path, std::ios::binary);
  std::stringstream bytes;
  bytes << f.rdbuf();
  std::remove(path.c_str());
  if (!f) throw std::runtime_error("cannot read back '" + path + "'");
  return bytes.str();
}

class ServedWan : public ServedModel {
 public:
  ServedWan(const ServeOptions& o, World& world, int ulysses, int ring)
      : files_(pipelines::WanFiles::find(o.model_dir)),
        wan_(files_, o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype)),
        sp_(ulysses, ring) {
    sp_.setup(world);
    // Once: every request runs under the same plan.
    apply_sequence_parallel(wan_.transformer(), sp_);
  }

  RequestLimits limits(const ServeOptions& o, int world_size) const override {
    RequestLimits l;
    l.makes_video = true;
    l.size_unit = 2 * (1024 / wan_.latent_shape(1, 1024, 1024)[3]);  // a 2x2 patch of latents
    l.max_side = o.max_size;
    // Wan's plan pads the tokens to a multiple of the ranks, but RoPE's
    // split needs a token for every rank.
    l.min_tokens = world_size;
    l.max_frames = o.max_frames;
    // umT5 takes 512 tokens; a longer prompt is cut there, as diffusers does.
    return l;
  }

  std::string describe() const override {
    return "wan " + wan_.transformer_info().variant + ", " + files_.layout + ", " +
           models::dtype_name(wan_.dtype());
  }
  const char* kind() const override { return "video"; }

  std::string run(const std::string& wire, GenerationContext& g) override {
    const auto req = video_request_from_wire(wire);
    const int steps = req.steps > 0 ? req.steps : 50;  // Wan's default
    const auto shape = wan_.latent_shape(req.frames, req.height, req.width);
    auto t0 = Clock::now();
    // Every rank encodes (as `spdit run` does): no tensor broadcast needed.
    pipelines::WanPrompts prompts;
    prompts.prompt_embeds = wan_.encode(req.prompt);
    if (req.guidance > 1) prompts.negative_prompt_embeds = wan_.encode(req.negative_prompt);
    g.phase("encode", t0);
    g.begin_steps(steps);
    t0 = Clock::now();
    auto latents = wan_.denoise(wan_.initial_noise(shape, req.seed), prompts, steps, req.guidance,
                                pipelines::WanScheduler::kUniPC, &sp_.state(),
                                [&](int64_t i, int64_t) { g.step_done(i); });
    g.phase("denoise", t0);
    t0 = Clock::now();
    std::string error;
    const auto frames = g.decode(
        [&](const SequenceParallelConfig* bands) { return wan_.decode(latents, bands); }, error);
    if (!g.lead() || !error.empty()) return error;
    try {
      g.job()->mp4 = mp4_bytes(frames, req.fps, g.job()->id);  // frames (F, H, W, 3) uint8
      g.job()->seeds.push_back(req.seed);
      g.phase("decode", t0);
    } catch (const std::exception& e) {
      return std::string("writing the MP4 failed on rank 0: ") + e.what();
    }
    return "";
  }

 private:
  pipelines::WanFiles files_;
  pipelines::WanVideoPipeline wan_;
  SequenceParallelConfig sp_;
};

}  // namespace

std::unique_ptr<ServedModel> load_served_wan(const ServeOptions& o, World& world, int ulysses,
                                             int ring) {
  return std::make_unique<ServedWan>(o, world, ulysses, ring);
}

}  // namespace spdit::cli
