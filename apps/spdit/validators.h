#pragma once
// Checks of command-line values whose messages read as a person would write
// them ("must be a whole number of at least 1, got '0'"); CLI11's own
// numeric ranges print the limits of a double ("0.000000 to 1.8e308").
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <string>

namespace spdit::cli {

/// A whole number in [lo, hi]; hi = INT64_MAX reads "at least lo".
inline CLI::Validator whole_number(int64_t lo, int64_t hi = INT64_MAX) {
  const std::string want =
      hi == INT64_MAX ? "a whole number of at least " + std::to_string(lo)
                      : "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, want](std::string& in) {
        // stoll would accept "5x" and the wrapping of a negative into a seed.
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(in, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != in.size() || v < lo || v > hi)
          return "must be " + want + ", got '" + in + "'";
        return std::string();
      },
      // Shown in --help after the type: "INT:POSITIVE=1024", "INT:1..65535".
      hi != INT64_MAX ? std::to_string(lo) + ".." + std::to_string(hi)
      : lo == 1       ? std::string("POSITIVE")
      : lo == 0       ? std::string("NONNEGATIVE")
                      : ">=" + std::to_string(lo));
}

/// A positive number of seconds up to a year ("nan" and "inf" are refused).
inline CLI::Validator positive_seconds() {
  return CLI::Validator(
      [](std::string& in) {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(in, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        // Up to a year, as SPDIT_TIMEOUT (runtime/world.h): beyond, milliseconds overflow.
        if (used == 0 || used != in.size() || !std::isfinite(v) || v <= 0 || v > 3.2e7) {
          return "must be a positive number of seconds (up to a year), got '" + in + "'";
        }
        return std::string();
      },
      "POSITIVE");
}

}  // namespace spdit::cli
