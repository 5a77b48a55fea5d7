#include "serve_model.h"

#include "serve_loop.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/fault_injection.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

void GenerationContext::begin_steps(int steps, int image) {
  if (job_) {
    job_->image = image;
    job_->steps = steps;
    job_->step = 0;
  }
  last_step_ = Clock::now();
}

void GenerationContext::step_done(int64_t step) {
  if (state_) state_->metrics.step_done(since(last_step_));
  last_step_ = Clock::now();
  if (job_) job_->step = static_cast<int>(step);
  // Rank 0 says whether to go on; every rank learns it through the group,
  // so all stop at the same step.
  auto flag = at::zeros({1}, at::kLong);
  if (job_ && (job_->cancelled || stop_requested_())) flag.fill_(job_->cancelled ? 1 : 2);
  broadcast(world_.group(), flag);
  const int64_t why = flag.item<int64_t>();
  if (why == 1) throw Cancelled("the client disconnected");
  if (why == 2) throw Cancelled("the server is shutting down (SIGTERM or SIGINT)");
}

void GenerationContext::phase(const char* name, Clock::time_point t0) const {
  if (state_) state_->metrics.phase_done(name, since(t0));
}

at::Tensor GenerationContext::decode(
    const std::function<at::Tensor(const SequenceParallelConfig*)>& decode, std::string& error) {
  if (!bands_) {
    // Rank 0 alone decodes; an error here must not leave the others waiting
    // in the next collective, so it is kept until after it.
    if (!lead() || !error.empty()) return {};
    try {
      fault_point("decode", world_.rank());
      return decode(nullptr);
    } catch (const std::exception& e) {
      error = std::string("decoding failed on rank 0: ") + e.what();
      return {};
    }
  }
  try {
    fault_point("decode", world_.rank());
    return decode(bands_);
  } catch (const std::exception& e) {
    if (lead()) {
      job_->finish(503, error_body(std::string("decoding failed on rank 0: ") + e.what() +
                                       " (the ranks decode together, so the server stops: "
                                       "restart it, or serve with --vae-parallel off)",
                                   "rank_failed"));
    }
    throw;
  }
}

std::unique_ptr<ServedModel> ServedModel::load(const ServeOptions& o, World& world, int ulysses,
                                               int ring) {
  if (pipelines::WanFiles::is_wan_folder(o.model_dir))
    return load_served_wan(o, world, ulysses, ring);
  return load_served_flux(o, world, ulysses, ring);
}

}  // namespace spdit::cli
