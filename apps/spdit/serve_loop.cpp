#include "serve_loop.h"

#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "decode_bands.h"
#include "rank_setup.h"
#include "serve_model.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/memory_meter.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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
                            {"--max-n", std::to_string(o.max_n)},
                            {"--max-frames", std::to_string(o.max_frames)},
                            {"--vae-parallel", o.vae_parallel ? "on" : "off"}});
  auto t0 = Clock::now();
  const auto model = ServedModel::load(o, world, u, r);
  // Once: every request decodes in the same bands.
  const auto bands = decode_bands(world, o.vae_parallel);
  gather_stats(world, state);
  if (lead) {
    state->set_ready(model->limits(o, world.size()), world.size());
    std::cout << "spdit serve: ready: " << o.model_dir << " (" << model->describe() << ") on "
              << world.size() << " rank(s) (ulysses " << u << " x ring " << r << "), "
              << (bands ? "decoding in " + std::to_string(world.size()) + " bands"
                        : std::string("decoding on rank 0"))
              << ", loaded in " << std::fixed << std::setprecision(1) << since(t0) << " s"
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
                : job
                    ? json{{"kind", job->is_video ? "video" : "image"},
                           {"request", job->is_video ? to_wire(job->video) : to_wire(job->request)}}
                          .dump()
                    : kIdle;
    }
    // Also the idle ranks' heartbeat: a tick at least every 250 ms keeps
    // them inside the process-group timeout, and shows rank 0 a dead peer.
    const auto said = json::parse(broadcast_bytes(world.group(), message));
    if (said.at("kind") == "stop") break;
    if (said.at("kind") == "idle") continue;
    if (said.at("kind") != model->kind()) {
      // The HTTP side refuses the other kind (501): reaching here is a bug.
      throw std::logic_error("spdit serve: a '" + said.at("kind").get<std::string>() +
                             "' request reached a '" + model->kind() + "' model");
    }
    const auto started = Clock::now();
    try {
      GenerationContext context(world, state, job.get(), stop_requested, bands.get());
      const std::string error = model->run(said.at("request").get<std::string>(), context);
      // Every rank: memory and bytes moved to the metrics; the others wait
      // here while rank 0 writes the PNG or MP4.
      gather_stats(world, state);
      if (lead && error.empty()) {
        state->generation_took(since(started));
        state->metrics.generation_done("ok");
        job->finish(200, "");
      } else if (lead) {
        state->metrics.generation_done("failed");
        job->finish(500, error_body(error, "server_error"));
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
