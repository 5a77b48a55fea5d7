#pragma once
// What `spdit run --model-dir` (FLUX.1 and Wan) and `spdit serve` share
// around the autoencoder's decode: the row-band group every rank decodes in
// (--vae-parallel), and the run report's common part.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spdit/plan/sp_config.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

/// With several ranks and --vae-parallel on, every rank of the job decodes a
/// band of rows (row_bands.h): a set-up ring over all of them. Null
/// otherwise: rank 0 decodes alone. Every rank calls it (it builds groups).
std::unique_ptr<SequenceParallelConfig> decode_bands(World& world, bool vae_parallel);

/// "decode" or "decode (N ranks)", for the phase line.
std::string decode_phase_name(const SequenceParallelConfig* bands);

/// Seconds per phase of one generation, as the run report gives them.
struct PhaseSeconds {
  double load = 0, encode = 0, denoise = 0, decode = 0;
  std::vector<double> steps;
};

/// The report's fields every pipeline has (`spdit run --json`): the layout,
/// the phases' seconds and how many ranks decoded. The caller adds its
/// model's own (variant, size, frames, ...).
nlohmann::json run_report(int ranks, int ulysses, int ring, const PhaseSeconds& seconds,
                          const SequenceParallelConfig* bands);

/// `load 1.000 s, encode ... s, denoise ... s, decode ... s` on stdout,
/// plus `extra` (e.g. ", write 0.1 s").
void print_phase_seconds(const PhaseSeconds& seconds, const std::string& extra = "");

}  // namespace spdit::cli
