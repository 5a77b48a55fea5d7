#pragma once
// What `spdit run --model-dir` reports for FLUX.1 and Wan alike: a line per
// phase and a bar over the steps on rank 0's stderr, the phase seconds on
// stdout, and the common part of the --json report.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spdit/plan/sp_config.h"

namespace spdit::cli {

/// Seconds per phase of one generation.
struct PhaseSeconds {
  double load = 0, encode = 0, denoise = 0, decode = 0;
  std::vector<double> steps;
};

/// Rank 0's progress on stderr (`on` false elsewhere: silent).
struct Progress {
  bool on;
  /// `[#####.....] step i/n  0.123 s`, redrawn in place on a terminal.
  void step(int64_t i, int64_t n, double seconds) const;
  /// `encode 0.123 s`.
  void phase(const std::string& what, double seconds) const;
};

/// The report's fields every pipeline has: the layout, the phases' seconds
/// and how many ranks decoded (`bands`: decode_bands.h). The caller adds its
/// model's own (variant, size, frames, ...).
nlohmann::json run_report(int ranks, int ulysses, int ring, const PhaseSeconds& seconds,
                          const SequenceParallelConfig* bands);

/// `load 1.000 s, encode ... s, denoise ... s, decode ... s` on stdout,
/// plus `extra` (e.g. ", write 0.1 s").
void print_phase_seconds(const PhaseSeconds& seconds, const std::string& extra = "");

}  // namespace spdit::cli
