#include "serve_metrics.h"

#include <iomanip>
#include <sstream>

namespace spdit::cli {

const std::vector<std::string>& RankStats::kinds() {
  static const std::vector<std::string> k = {"all_to_all", "all_gather", "ring_exchange",
                                             "all_reduce", "metadata",   "broadcast"};
  return k;
}

size_t RankStats::int_count() { return 3 + kinds().size(); }

std::vector<int64_t> RankStats::to_ints() const {
  std::vector<int64_t> v = {resident_bytes, tensor_bytes_live, tensor_bytes_peak};
  for (const auto& k : kinds()) {
    const auto found = sent_bytes.find(k);
    v.push_back(found == sent_bytes.end() ? 0 : found->second);
  }
  return v;
}

RankStats RankStats::from_ints(const int64_t* v) {
  RankStats s;
  s.resident_bytes = v[0];
  s.tensor_bytes_live = v[1];
  s.tensor_bytes_peak = v[2];
  for (size_t i = 0; i < kinds().size(); ++i) s.sent_bytes[kinds()[i]] = v[3 + i];
  return s;
}

void ServeMetrics::request_answered(int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_by_status_[status];
}

void ServeMetrics::step_done(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_seconds_sum_ += seconds;
  ++steps_;
}

void ServeMetrics::phase_done(const std::string& phase, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& p = phases_[phase];
  p.first += seconds;
  ++p.second;
}

void ServeMetrics::generation_done(const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++generations_[outcome];
}

void ServeMetrics::set_ranks(const std::vector<RankStats>& ranks) {
  std::lock_guard<std::mutex> lock(mutex_);
  ranks_ = ranks;
}

std::string ServeMetrics::prometheus_text(bool ready, size_t queue_depth, size_t queue_capacity,
                                          bool running) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream os;
  os << std::setprecision(9);
  auto head = [&](const char* name, const char* type, const char* help) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  head("spdit_ready", "gauge", "1 once every rank has loaded the model and none has failed");
  os << "spdit_ready " << (ready ? 1 : 0) << "\n";
  head("spdit_requests_total", "counter",
       "HTTP requests to the generation endpoints, by answer status");
  for (const auto& [status, n] : requests_by_status_)
    os << "spdit_requests_total{status=\"" << status << "\"} " << n << "\n";
  head("spdit_generations_total", "counter", "Generations run, by outcome (ok, cancelled, failed)");
  for (const auto& [outcome, n] : generations_)
    os << "spdit_generations_total{outcome=\"" << outcome << "\"} " << n << "\n";
  head("spdit_queue_depth", "gauge", "Requests waiting behind the running generation");
  os << "spdit_queue_depth " << queue_depth << "\n";
  head("spdit_queue_capacity", "gauge", "Requests the queue holds before answering 429 (--queue)");
  os << "spdit_queue_capacity " << queue_capacity << "\n";
  head("spdit_generation_running", "gauge", "1 while a generation runs");
  os << "spdit_generation_running " << (running ? 1 : 0) << "\n";
  head("spdit_step_seconds", "summary",
       "Denoising steps (every rank's transformer under SP), seconds");
  os << "spdit_step_seconds_sum " << step_seconds_sum_ << "\nspdit_step_seconds_count " << steps_
     << "\n";
  head("spdit_phase_seconds", "summary",
       "Phases of a generation (encode, denoise, decode), seconds");
  for (const auto& [phase, p] : phases_) {
    os << "spdit_phase_seconds_sum{phase=\"" << phase << "\"} " << p.first << "\n";
    os << "spdit_phase_seconds_count{phase=\"" << phase << "\"} " << p.second << "\n";
  }
  head("spdit_comm_sent_bytes_total", "counter",
       "Bytes each rank sent to other ranks, by collective kind");
  for (size_t r = 0; r < ranks_.size(); ++r) {
    for (const auto& [kind, bytes] : ranks_[r].sent_bytes) {
      os << "spdit_comm_sent_bytes_total{rank=\"" << r << "\",kind=\"" << kind << "\"} " << bytes
         << "\n";
    }
  }
  head("spdit_rank_resident_bytes", "gauge",
       "Resident memory (VmRSS) of each rank after its last generation");
  for (size_t r = 0; r < ranks_.size(); ++r)
    os << "spdit_rank_resident_bytes{rank=\"" << r << "\"} " << ranks_[r].resident_bytes << "\n";
  head("spdit_rank_tensor_bytes", "gauge",
       "Bytes of live tensors on each rank after its last generation");
  for (size_t r = 0; r < ranks_.size(); ++r)
    os << "spdit_rank_tensor_bytes{rank=\"" << r << "\"} " << ranks_[r].tensor_bytes_live << "\n";
  head("spdit_rank_tensor_bytes_peak", "gauge",
       "Peak bytes of live tensors on each rank since the server started");
  for (size_t r = 0; r < ranks_.size(); ++r)
    os << "spdit_rank_tensor_bytes_peak{rank=\"" << r << "\"} " << ranks_[r].tensor_bytes_peak
       << "\n";
  return os.str();
}

}  // namespace spdit::cli
