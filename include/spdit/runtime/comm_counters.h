#pragma once
// Byte accounting for every collective spdit issues, so a run can report
// exactly what it moved and tests can check it against the formulas.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace spdit {

/// Bytes one rank sent to and received from *other* ranks (its own chunk of an
/// all-to-all or all-gather is not counted: it never leaves the rank).
struct CommBytes {
  int64_t sent = 0;
  int64_t received = 0;
  int64_t calls = 0;
};

/// Per-rank counters keyed by kind of operation ("all_to_all", "all_gather",
/// "ring_exchange", "all_reduce", "metadata").
///
///   auto before = world.counters().get("all_to_all").sent;
///   world.counters().reset();
class CommCounters {
 public:
  void record(const std::string& kind, int64_t sent, int64_t received);
  CommBytes get(const std::string& kind) const;
  CommBytes total() const;
  std::map<std::string, CommBytes> snapshot() const;
  void reset();

 private:
  mutable std::mutex mutex_;
  std::map<std::string, CommBytes> by_kind_;
};

}  // namespace spdit
