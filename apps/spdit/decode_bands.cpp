#include "decode_bands.h"

namespace spdit::cli {

std::unique_ptr<SequenceParallelConfig> decode_bands(World& world, bool vae_parallel) {
  if (!vae_parallel || world.size() < 2) return nullptr;
  // Ulysses 1: the autoencoder's attention has one head, nothing to scatter;
  // ring over every rank: each holds a band of rows.
  auto bands = std::make_unique<SequenceParallelConfig>(1, world.size());
  bands->setup(world);
  return bands;
}

std::string decode_phase_name(const SequenceParallelConfig* bands) {
  return bands ? "decode (" + std::to_string(bands->ring_degree) + " ranks)" : "decode";
}

}  // namespace spdit::cli
