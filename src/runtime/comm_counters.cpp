#include "spdit/runtime/comm_counters.h"

namespace spdit {

void CommCounters::record(const std::string& kind, int64_t sent, int64_t received) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& b = by_kind_[kind];
  b.sent += sent;
  b.received += received;
  b.calls += 1;
}

CommBytes CommCounters::get(const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_kind_.find(kind);
  return it == by_kind_.end() ? CommBytes{} : it->second;
}

CommBytes CommCounters::total() const {
  std::lock_guard<std::mutex> lock(mutex_);
  CommBytes t;
  for (const auto& [kind, b] : by_kind_) {
    t.sent += b.sent;
    t.received += b.received;
    t.calls += b.calls;
  }
  return t;
}

std::map<std::string, CommBytes> CommCounters::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return by_kind_;
}

void CommCounters::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  by_kind_.clear();
}

}  // namespace spdit
