#include "run_report.h"

#include <unistd.h>

#include <iomanip>
#include <iostream>

namespace spdit::cli {

void Progress::step(int64_t i, int64_t n, double seconds) const {
  if (!on) return;
  const int width = 24, done = static_cast<int>(i * width / n);
  std::cerr << "[" << std::string(done, '#') << std::string(width - done, '.') << "] step " << i
            << "/" << n << "  " << std::fixed << std::setprecision(3) << seconds << " s"
            << (isatty(STDERR_FILENO) ? "\r" : "\n") << std::flush;
  if (i == n && isatty(STDERR_FILENO)) std::cerr << "\n";
}

void Progress::phase(const std::string& what, double seconds) const {
  if (on)
    std::cerr << what << " " << std::fixed << std::setprecision(3) << seconds << " s" << std::endl;
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
