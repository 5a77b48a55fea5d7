#include "decode_bands.h"

#include <iomanip>
#include <iostream>

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

nlohmann::json run_report(int ranks, int ulysses, int ring, const PhaseSeconds& s,
                          const SequenceParallelConfig* bands) {
  return {{"ranks", ranks},
          {"ulysses", ulysses},
          {"ring", ring},
          {"load_seconds", s.load},
          {"encode_seconds", s.encode},
          {"denoise_seconds", s.denoise},
          {"decode_seconds", s.decode},
          {"decode_ranks", bands ? bands->ring_degree : 1},
          {"step_seconds", s.steps}};
}

void print_phase_seconds(const PhaseSeconds& s, const std::string& extra) {
  std::cout << "load " << std::fixed << std::setprecision(3) << s.load << " s, encode " << s.encode
            << " s, denoise " << s.denoise << " s, decode " << s.decode << " s" << extra
            << std::endl;
}

}  // namespace spdit::cli
