// `spdit serve`: the model stays loaded on every rank; rank 0 answers HTTP
// and hands each request to all ranks through the job's process group.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

#include "commands.h"
#include "error_text.h"
#include "launcher.h"
#include "rank_setup.h"
#include "serve_http.h"
#include "serve_loop.h"
#include "spdit/pipelines/wan_video_pipeline.h"
#include "validators.h"

namespace spdit::cli {
namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

// Every rank catches SIGTERM/SIGINT (the launcher forwards them to all):
// rank 0 winds the server down and tells the others through the group; the
// others simply wait for that word.
void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that leaves mid-answer is not our death
}

bool is_rank_zero() {
  const char* rank = std::getenv("RANK");
  return !launched_by_launcher() || (rank && std::string(rank) == "0");
}

int serve_this_rank(const ServeOptions& o) {
  catch_stop_signals();
  const auto stop_requested = [] { return g_stop != 0; };
  if (!is_rank_zero()) {
    return run_as_rank([&](World& w) { return serve_rank(w, o, nullptr, stop_requested); });
  }
  // Rank 0 listens before the job even forms: /health answers 503 while
  // the ranks join and load.
  ServeState state(static_cast<size_t>(o.queue), static_cast<size_t>(o.keep_files));
  HttpFrontend http(state, o.http);
  http.start();
  try {
    const int code =
        run_as_rank([&](World& w) { return serve_rank(w, o, &state, stop_requested); });
    http.stop();
    return code;
  } catch (const std::exception& e) {
    // Requests in flight and queued get the reason (503), /health turns
    // unready; the handlers answer before the server stops.
    // The first line names the failed rank; the SP diagnosis below it is
    // for the operator's log (main prints it whole), not for clients.
    std::string why = clean_error_text(e.what());
    why = why.substr(0, why.find('\n'));
    state.fail("the job failed: " + why);
    // A moment for /health to say so (and why) before the port closes; the
    // launcher allows survivors 3 s before it stops them.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    http.stop();
    throw;
  }
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto* cmd =
      app.add_subcommand("serve",
                         "Keep a model folder loaded on all ranks and answer generation requests "
                         "over HTTP (OpenAI's images API, a video endpoint for Wan2.1, /health, "
                         "/metrics, a web page at /)");
  static ServeOptions o;
  cmd->add_option("--model-dir", o.model_dir,
                  "A model folder as downloaded (diffusers layout): FLUX.1 serves pictures, "
                  "Wan2.1 videos")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--nproc", o.nproc,
                  "Start this many local ranks (default: ulysses x ring, else 1)")
      ->check(whole_number(1));
  cmd->add_flag("--oversubscribe", o.oversubscribe,
                "With --nproc: allow more than 4 ranks per usable core");
  cmd->add_option("--ulysses", o.ulysses, "Ulysses degree U")->check(whole_number(1));
  cmd->add_option("--ring", o.ring, "Ring degree R")->check(whole_number(1));
  cmd->add_option("--dtype", o.dtype, "Compute dtype (default: as stored)");
  cmd->add_option("--threads", o.threads, "Intra-op threads per rank")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--host", o.http.host, "Address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  cmd->add_option("--port", o.http.port, "Port to listen on")
      ->required()
      ->check(whole_number(1, 65535));
  cmd->add_option(
         "--api-key", o.http.api_key,
         "Require 'Authorization: Bearer KEY' on every request but the page (or set SPDIT_API_KEY, "
         "which keeps the key out of the process list)")
      ->envname("SPDIT_API_KEY");
  cmd->add_option("--queue", o.queue, "Requests that may wait behind the running one before 429")
      ->check(whole_number(1, 1000))
      ->capture_default_str();
  cmd->add_option("--max-size", o.max_size, "Largest side, in pixels, a request may ask for")
      ->check(whole_number(16, 16384))
      ->capture_default_str();
  cmd->add_option("--max-n", o.max_n, "Most pictures per request")
      ->check(whole_number(1, 64))
      ->capture_default_str();
  cmd->add_option("--keep-files", o.keep_files,
                  "Pictures kept for response_format url (oldest dropped)")
      ->check(whole_number(1, 100000))
      ->capture_default_str();
  cmd->add_option("--max-frames", o.max_frames, "Wan2.1: most frames a video request may ask for")
      ->check(whole_number(1, 1001))
      ->capture_default_str();
  static std::string vae_parallel = "on";
  cmd->add_option("--vae-parallel", vae_parallel,
                  "With several ranks: every rank decodes a band of rows (off: rank 0 decodes "
                  "alone)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  static int cfg = 1;
  cmd->add_option("--cfg", cfg,
                  "CFG degree; serve runs guidance's branches one after the other, so only 1")
      ->check(whole_number(1));
  cmd->callback([&action] {
    action = [] {
      o.vae_parallel = vae_parallel == "on";
      if (cfg != 1) {
        throw std::invalid_argument(
            "--cfg " + std::to_string(cfg) +
            ": serve runs guidance's two branches (Wan2.1's CFG, FLUX.1's true CFG) one after "
            "the other on all ranks (the CFG axis is `spdit run`'s so far): leave --cfg out and "
            "give all ranks to --ulysses/--ring");
      }
      if (launched_by_launcher()) {
        if (o.nproc)
          throw std::invalid_argument("--nproc starts local ranks; under a launcher leave it out");
        return serve_this_rank(o);
      }
      const int n = o.nproc ? o.nproc : std::max(1, o.ulysses) * std::max(1, o.ring);
      if (n == 1) return serve_this_rank(o);
      LaunchOptions lo;
      lo.nproc = n;
      lo.oversubscribe = o.oversubscribe;
      lo.ranks_stop_cleanly = true;  // SIGTERM: rank 0 finishes or cancels, all exit 0
      lo.stop_grace_s = 30;
      return relaunch_self(lo, "--nproc");
    };
  });
}

}  // namespace spdit::cli
