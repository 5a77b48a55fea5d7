// `spdit serve` on a FLUX.1 folder: pictures, as `spdit run --model-dir`
// makes them.
#include <iomanip>
#include <optional>
#include <sstream>

#include "png_writer.h"
#include "serve_loop.h"
#include "serve_model.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/flux_image_pipeline.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;

class ServedFlux : public ServedModel {
 public:
  ServedFlux(const ServeOptions& o, World& world, int ulysses, int ring)
      : dir_(pipelines::ModelDir::open(o.model_dir)),
        flux_(std::make_shared<pipelines::FluxImagePipeline>(
            dir_, o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype))),
        sp_(ulysses, ring) {
    // A folder made for one size and T5 length (spdit's trained demo) is
    // served at them, as `spdit run` runs it.
    if (const auto tokens = dir_.run_default("max_sequence_length", 0); tokens > 0)
      flux_->set_max_sequence_length(static_cast<int64_t>(tokens));
    sp_.setup(world);
    // Once: every request runs under the same plan.
    apply_sequence_parallel(flux_->transformer(), sp_);
  }

  RequestLimits limits(const ServeOptions& o, int world_size) const override {
    RequestLimits l;
    l.size_unit = 2 * flux_->grid(1024, 1024).vae_scale_factor;
    l.max_side = o.max_size;
    l.min_tokens = world_size;
    l.max_n = o.max_n;
    l.max_prompt_tokens = flux_->t5_max_length();
    l.default_width = static_cast<int64_t>(dir_.run_default("width", 1024));
    l.default_height = static_cast<int64_t>(dir_.run_default("height", 1024));
    l.default_true_cfg_scale = dir_.run_default("true_cfg_scale", 1.0);
    // The HTTP threads count tokens while the loop runs: the tokenizer is
    // read-only, and the shared pointer keeps it alive past the loop.
    auto flux = flux_;
    l.prompt_tokens = [flux](const std::string& p) { return flux->t5_token_count(p); };
    return l;
  }

  std::string describe() const override {
    return "flux " + flux_->transformer_info().variant + ", " + models::dtype_name(flux_->dtype());
  }
  const char* kind() const override { return "image"; }

  std::string run(const std::string& wire, GenerationContext& g) override {
    const auto req = image_request_from_wire(wire);
    const auto grid = flux_->grid(req.height, req.width);
    const int steps = req.steps > 0 ? req.steps : flux_->has_guidance_embedder() ? 28 : 4;
    auto t0 = Clock::now();
    // Every rank encodes (as `spdit run` does): no tensor broadcast needed.
    const auto prompt = flux_->encode(req.prompt);
    // True CFG's branches run one after the other on all ranks.
    std::optional<pipelines::FluxPrompt> negative;
    if (req.true_cfg_scale > 1) negative = flux_->encode(req.negative_prompt);
    const pipelines::FluxTrueCfg true_cfg{negative ? &*negative : nullptr, req.true_cfg_scale};
    g.phase("encode", t0);
    std::string error;
    // After an error the loop still runs every picture's steps: the other
    // ranks learn of rank 0's error only at the end, and must meet it in the
    // same collectives until then.
    for (int k = 0; k < req.n; ++k) {
      g.begin_steps(steps, k);
      t0 = Clock::now();
      auto latents =
          flux_->denoise(flux_->initial_noise(grid, req.seed + k), prompt, grid, steps,
                         req.guidance, true_cfg, [&](int64_t i, int64_t) { g.step_done(i); });
      g.phase("denoise", t0);
      t0 = Clock::now();
      const auto pixels = g.decode(
          [&](const SequenceParallelConfig* bands) { return flux_->decode(latents, grid, bands); },
          error);
      if (!g.lead() || !error.empty()) continue;
      try {
        // As `spdit run --out` writes it, so that the bytes are the same.
        g.job()->pngs.push_back(
            encode_png(pixels[0].permute({2, 0, 1}).to(at::kFloat) / 255.0, 1));  // (1, H, W, 3)
        g.job()->seeds.push_back(req.seed + k);
        g.phase("decode", t0);
      } catch (const std::exception& e) {
        error = std::string("writing the PNG failed on rank 0: ") + e.what();
      }
    }
    return error;
  }

 private:
  pipelines::ModelDir dir_;  // its _spdit_run_defaults are the requests' defaults
  std::shared_ptr<pipelines::FluxImagePipeline> flux_;
  SequenceParallelConfig sp_;
};

}  // namespace

std::unique_ptr<ServedModel> load_served_flux(const ServeOptions& o, World& world, int ulysses,
                                              int ring) {
  return std::make_unique<ServedFlux>(o, world, ulysses, ring);
}

}  // namespace spdit::cli
