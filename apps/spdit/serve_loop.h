#pragma once
// `spdit serve`, every rank: load the model once, then run each request
// that rank 0 hands out through the job's process group, step by step, until
// rank 0 says stop.
#include <cstdint>
#include <functional>
#include <string>

#include "serve_http.h"
#include "serve_state.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

struct ServeOptions {
  std::string model_dir, dtype;
  HttpOptions http;
  int nproc = 0, ulysses = 0, ring = 0, threads = 1;
  int queue = 8, max_n = 4, keep_files = 64, max_frames = 81;
  int64_t max_size = 1024;
  bool oversubscribe = false;
  bool vae_parallel = true;  // with several ranks, each decodes a band of rows
};

/// Runs until rank 0 says stop (after `stop_requested` turned true there):
/// returns 0. A failed collective (a rank died) throws, naming the rank.
/// `state` is rank 0's, null on the others.
int serve_rank(World& world, const ServeOptions& options, ServeState* state,
               const std::function<bool()>& stop_requested);

}  // namespace spdit::cli
