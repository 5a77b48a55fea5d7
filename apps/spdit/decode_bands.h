#pragma once
// The row-band group every rank decodes in (--vae-parallel), shared by
// `spdit run --model-dir` (FLUX.1 and Wan) and `spdit serve`.
#include <memory>
#include <string>

#include "spdit/plan/sp_config.h"
#include "spdit/runtime/world.h"

namespace spdit::cli {

/// With several ranks and --vae-parallel on, every rank of the job decodes a
/// band of rows (row_bands.h): a set-up ring over all of them. Null
/// otherwise: rank 0 decodes alone. Every rank calls it (it builds groups).
std::unique_ptr<SequenceParallelConfig> decode_bands(World& world, bool vae_parallel);

/// "decode" or "decode (N ranks)", for the phase line.
std::string decode_phase_name(const SequenceParallelConfig* bands);

}  // namespace spdit::cli
