#pragma once
// `spdit bench serve`: a load test of a running `spdit serve`.
#include "commands.h"

namespace spdit::cli {
/// Adds `serve` under `spdit bench`.
void add_bench_serve_command(CLI::App& bench, Action& action);
}  // namespace spdit::cli
