#pragma once
// `spdit serve`, every rank: the model a server keeps loaded, FLUX.1 (a
// picture per request) or Wan2.1 (a video), and what one generation needs
// around it: the per-step word from rank 0 (go on or stop), the phase
// timings, the decode on every rank's band.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "serve_jobs.h"
#include "serve_state.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

struct ServeOptions;

/// Thrown on every rank at the same step when rank 0 cancels the request.
struct Cancelled : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One request's run on one rank. `job` and `state` are rank 0's (null on
/// the others).
class GenerationContext {
 public:
  GenerationContext(World& world, ServeState* state, Job* job,
                    const std::function<bool()>& stop_requested,
                    const SequenceParallelConfig* bands)
      : world_(world), state_(state), job_(job), stop_requested_(stop_requested), bands_(bands) {}

  bool lead() const { return job_ != nullptr; }
  Job* job() const { return job_; }

  /// Before a denoising loop of `steps` steps (picture `image` of the request).
  void begin_steps(int steps, int image = 0);
  /// After each denoising step: metrics and progress on rank 0, then rank 0's
  /// word to all (throws Cancelled on every rank at the same step).
  void step_done(int64_t step);
  /// A phase's seconds to the metrics (encode, denoise, decode).
  void phase(const char* name, std::chrono::steady_clock::time_point t0) const;

  /// Runs `decode` (given the band group, or null) where it must run: with
  /// bands on every rank, else on rank 0 alone (the others get an undefined
  /// tensor). A failure on rank 0 alone lands in `error` and ends only this
  /// request (once `error` is set, rank 0 decodes no more of it). A failure inside the banded
  /// decode leaves the ranks' band exchanges out of step, so it ends the job: rank 0 answers the
  /// request 503 with the reason and throws; a failing peer throws, and rank 0's next exchange
  /// names it (a rank death, serve_loop.h).
  at::Tensor decode(const std::function<at::Tensor(const SequenceParallelConfig*)>& decode,
                    std::string& error);

 private:
  World& world_;
  ServeState* state_;
  Job* job_;
  const std::function<bool()>& stop_requested_;
  const SequenceParallelConfig* bands_;
  std::chrono::steady_clock::time_point last_step_ = std::chrono::steady_clock::now();
};

/// The loaded model. Every rank holds one; each request runs on all of them.
class ServedModel {
 public:
  /// FLUX.1 or Wan2.1, as the folder is; the transformer under SP (U x R).
  static std::unique_ptr<ServedModel> load(const ServeOptions& options, World& world, int ulysses,
                                           int ring);
  virtual ~ServedModel() = default;

  /// What requests may ask of this model on `world_size` ranks.
  virtual RequestLimits limits(const ServeOptions& options, int world_size) const = 0;
  /// "flux dev, bf16": for the ready line.
  virtual std::string describe() const = 0;
  /// The message kind this model runs ("image" or "video").
  virtual const char* kind() const = 0;
  /// The request in its wire form (as to_wire made it) for this rank.
  /// Returns rank 0's error that ends only this request ("" when none);
  /// on rank 0 the result lands in the job.
  virtual std::string run(const std::string& request, GenerationContext& context) = 0;
};

/// The two models (serve_image_model.cpp, serve_video_model.cpp).
std::unique_ptr<ServedModel> load_served_flux(const ServeOptions& options, World& world,
                                              int ulysses, int ring);
std::unique_ptr<ServedModel> load_served_wan(const ServeOptions& options, World& world, int ulysses,
                                             int ring);

}  // namespace spdit::cli
