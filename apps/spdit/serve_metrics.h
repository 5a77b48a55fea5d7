#pragma once
// `spdit serve`: what GET /metrics reports, in Prometheus' text format.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace spdit::cli {

/// One rank's figures, gathered from every rank after each generation.
struct RankStats {
  int64_t resident_bytes = 0;                 // VmRSS
  int64_t tensor_bytes_live = 0;              // memory_meter.h
  int64_t tensor_bytes_peak = 0;              // since the server started
  std::map<std::string, int64_t> sent_bytes;  // by collective kind, since the server started

  /// The collective kinds gathered (a fixed list: every rank sends the same
  /// count).
  static const std::vector<std::string>& kinds();
  std::vector<int64_t> to_ints() const;
  static RankStats from_ints(const int64_t* v);
  static size_t int_count();
};

/// Counters and gauges; every method is thread-safe.
class ServeMetrics {
 public:
  void request_answered(int status);
  void step_done(double seconds);
  void phase_done(const std::string& phase,
                  double seconds);                   // encode, denoise, decode
  void generation_done(const std::string& outcome);  // ok, cancelled, failed
  void set_ranks(const std::vector<RankStats>& ranks);
  /// The text, with the gauges read now.
  std::string prometheus_text(bool ready, size_t queue_depth, size_t queue_capacity,
                              bool running) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, int64_t> requests_by_status_;
  std::map<std::string, int64_t> generations_;
  double step_seconds_sum_ = 0;
  int64_t steps_ = 0;
  std::map<std::string, std::pair<double, int64_t>> phases_;  // sum, count
  std::vector<RankStats> ranks_;
};

}  // namespace spdit::cli
