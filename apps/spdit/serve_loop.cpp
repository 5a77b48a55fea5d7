#include "serve_loop.h"

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "png_writer.h"
#include "rank_setup.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/precision.h"
#include "spdit/pipelines/flux_image_pipeline.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/memory_meter.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Thrown on every rank at the same step when rank 0 cancels the request.
struct Cancelled : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int64_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// Every rank's memory and bytes moved, to rank 0's metrics. A collective:
// after the load it also proves that every rank got there.
void gather_stats(World& world, ServeState* state) {
  RankStats mine;
  mine.resident_bytes = resident_bytes();
  mine.tensor_bytes_live = tensor_bytes_live();
  mine.tensor_bytes_peak = tensor_bytes_peak();
  for (const auto& [kind, bytes] : world.counters().snapshot()) mine.sent_bytes[kind] = bytes.sent;
  const auto all = all_gather_ints(world.group(), mine.to_ints());
  if (!state) return;
  std::vector<RankStats> ranks;
  for (int r = 0; r < world.size(); ++r)
    ranks.push_back(RankStats::from_ints(&all[r * RankStats::int_count()]));
  state->metrics.set_ranks(ranks);
}

// What rank 0 tells every rank at each tick.
const char* kIdle = R"({"kind":"idle"})";
const char* kStop = R"({"kind":"stop"})";

class Generation {
 public:
  Generation(World& world, pipelines::FluxImagePipeline& flux, ServeState* state, Job* job,
             const std::function<bool()>& stop_requested)
      : world_(world), flux_(flux), state_(state), job_(job), stop_requested_(stop_requested) {}

  /// Every rank runs it; on rank 0 the pictures land in the job. Returns
  /// rank 0's decoding error ("" when none), which ends only this request.
  std::string run(const ImageRequest& req) {
    const auto grid = flux_.grid(req.height, req.width);
    const int steps = req.steps > 0 ? req.steps : flux_.has_guidance_embedder() ? 28 : 4;
    auto t0 = Clock::now();
    // Every rank encodes (as `spdit run` does): no tensor broadcast needed.
    const auto prompt = flux_.encode(req.prompt);
    phase("encode", t0);
    std::string lead_error;
    for (int k = 0; k < req.n; ++k) {
      if (job_) {
        job_->image = k;
        job_->steps = steps;
        job_->step = 0;
      }
      t0 = Clock::now();
      auto last = Clock::now();
      auto latents = flux_.denoise(flux_.initial_noise(grid, req.seed + k), prompt, grid, steps,
                                   req.guidance, [&](int64_t i, int64_t) {
                                     if (state_) state_->metrics.step_done(since(last));
                                     last = Clock::now();
                                     if (job_) job_->step = static_cast<int>(i);
                                     go_on_or_cancel();
                                   });
      phase("denoise", t0);
      if (!job_) continue;
      // Rank 0 alone decodes; an error here must not leave the others
      // waiting in the next collective, so it is kept until after it.
      try {
        t0 = Clock::now();
        const auto pixels = flux_.decode(latents, grid);  // (1, H, W, 3) uint8
        // As `spdit run --out` writes it, so that the bytes are the same.
        job_->pngs.push_back(encode_png(pixels[0].permute({2, 0, 1}).to(at::kFloat) / 255.0, 1));
        job_->seeds.push_back(req.seed + k);
        phase("decode", t0);
      } catch (const std::exception& e) {
        lead_error = e.what();
        break;
      }
    }
    // The others skip decoding: their loop ends while rank 0 is still busy.
    gather_stats(world_, state_);
    return lead_error;
  }

 private:
  // After each step rank 0 says whether to go on; every rank learns it
  // through the group, so all stop at the same step.
  void go_on_or_cancel() {
    auto flag = at::zeros({1}, at::kLong);
    if (job_ && (job_->cancelled || stop_requested_())) flag.fill_(job_->cancelled ? 1 : 2);
    broadcast(world_.group(), flag);
    const int64_t why = flag.item<int64_t>();
    if (why == 1) throw Cancelled("the client disconnected");
    if (why == 2) throw Cancelled("the server is shutting down (SIGTERM or SIGINT)");
  }

  void phase(const char* name, Clock::time_point t0) {
    if (state_) state_->metrics.phase_done(name, since(t0));
  }

  World& world_;
  pipelines::FluxImagePipeline& flux_;
  ServeState* state_;
  Job* job_;
  const std::function<bool()>& stop_requested_;
};

RequestLimits limits_of(const std::shared_ptr<pipelines::FluxImagePipeline>& flux,
                        const ServeOptions& o, int world_size) {
  RequestLimits l;
  l.size_unit = 2 * flux->grid(1024, 1024).vae_scale_factor;
  l.max_side = o.max_size;
  l.min_tokens = world_size;
  l.max_n = o.max_n;
  l.max_prompt_tokens = flux->t5_max_length();
  // The HTTP threads count tokens while the loop runs: the tokenizer is
  // read-only, and the shared pointer keeps it alive past the loop.
  l.prompt_tokens = [flux](const std::string& p) { return flux->t5_token_count(p); };
  return l;
}

}  // namespace

int serve_rank(World& world, const ServeOptions& o, ServeState* state,
               const std::function<bool()>& stop_requested) {
  set_threads_per_rank(o.threads);
  install_memory_meter();
  const bool lead = world.rank() == 0;
  auto [u, r] = resolve_degrees(world.size(), o.ulysses, o.ring);
  check_ranks_agree(world, {{"--model-dir", o.model_dir},
                            {"--dtype", o.dtype},
                            {"--ulysses", std::to_string(u)},
                            {"--ring", std::to_string(r)},
                            {"--max-size", std::to_string(o.max_size)},
                            {"--max-n", std::to_string(o.max_n)}});
  auto t0 = Clock::now();
  const auto dtype = o.dtype.empty() ? at::ScalarType::Undefined : models::parse_dtype(o.dtype);
  auto flux =
      std::make_shared<pipelines::FluxImagePipeline>(pipelines::ModelDir::open(o.model_dir), dtype);
  SequenceParallelConfig sp{u, r};
  sp.setup(world);
  // Once: every request runs under the same plan.
  apply_sequence_parallel(flux->transformer(), sp);
  gather_stats(world, state);
  if (lead) {
    state->set_ready(limits_of(flux, o, world.size()), world.size());
    std::cout << "spdit serve: ready: " << o.model_dir << " (flux "
              << flux->transformer_info().variant << ", " << models::dtype_name(flux->dtype())
              << ") on " << world.size() << " rank(s) (ulysses " << u << " x ring " << r
              << "), loaded in " << std::fixed << std::setprecision(1) << since(t0) << " s"
              << std::endl;
  }
  while (true) {
    std::shared_ptr<Job> job;
    std::string message;
    if (lead) {
      if (stop_requested()) state->begin_stopping();
      if (!state->stopping()) job = state->queue.next(250);
      if (job && job->cancelled) {  // its client left while it waited
        job->finish(499, error_body("cancelled: the client disconnected", "cancelled"));
        state->metrics.generation_done("cancelled");
        continue;
      }
      // Running from here on: should the broadcast below fail (a rank
      // died), ServeState::fail answers this job too, not only the queue.
      if (job) state->set_running(job);
      message = state->stopping() ? kStop
                : job ? json{{"kind", "image"}, {"request", to_wire(job->request)}}.dump()
                      : kIdle;
    }
    // Also the idle ranks' heartbeat: a tick at least every 250 ms keeps
    // them inside the process-group timeout, and shows rank 0 a dead peer.
    const auto said = json::parse(broadcast_bytes(world.group(), message));
    if (said.at("kind") == "stop") break;
    if (said.at("kind") == "idle") continue;
    const auto request = image_request_from_wire(said.at("request").get<std::string>());
    const auto started = Clock::now();
    try {
      const std::string error =
          Generation(world, *flux, state, job.get(), stop_requested).run(request);
      if (lead && error.empty()) {
        state->generation_took(since(started));
        state->metrics.generation_done("ok");
        job->finish(200, "");
      } else if (lead) {
        state->metrics.generation_done("failed");
        job->finish(500,
                    error_body("decoding the picture failed on rank 0: " + error, "server_error"));
      }
    } catch (const Cancelled& e) {
      if (lead) {
        const bool stopping = stop_requested();
        job->finish(stopping ? 503 : 499, error_body(std::string("cancelled: ") + e.what(),
                                                     stopping ? "shutting_down" : "cancelled"));
        state->metrics.generation_done("cancelled");
      }
    }
    if (lead) state->set_running(nullptr);
  }
  if (lead) std::cout << "spdit serve: stopped" << std::endl;
  return 0;
}

}  // namespace spdit::cli
