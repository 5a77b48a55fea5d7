#pragma once
// `spdit serve`, rank 0: what the HTTP threads and the generation loop
// share. Everything here is thread-safe.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "serve_jobs.h"
#include "serve_metrics.h"
#include "serve_request.h"

namespace spdit::cli {

class ServeState {
 public:
  ServeState(size_t queue_capacity, size_t keep_files)
      : queue(queue_capacity), keep_files_(keep_files) {}

  JobQueue queue;
  ServeMetrics metrics;

  /// Every rank has loaded the model: requests are taken from now on.
  void set_ready(const RequestLimits& limits, int ranks);
  bool ready() const { return ready_ && !failed_; }
  int ranks() const { return ranks_; }
  RequestLimits limits() const;

  /// The job broke (a rank died, a collective failed): unready for good,
  /// every waiting request answered 503 with `message`.
  void fail(const std::string& message);
  bool failed() const { return failed_; }
  std::string failure() const;

  /// SIGTERM/SIGINT: new requests are refused (503) from now on.
  void begin_stopping();
  bool stopping() const { return stopping_; }

  /// The generation running now (null when idle), for progress and metrics.
  void set_running(std::shared_ptr<Job> job);
  std::shared_ptr<Job> running() const;

  /// Keeps a picture or video for GET /v1/files/<id>.<ext> (png, mp4); the
  /// oldest go past --keep-files.
  std::string keep_file(std::string bytes, const std::string& ext = "png");
  bool find_file(const std::string& id, const std::string& ext, std::string& bytes) const;

  uint64_t next_job_id() { return ++job_ids_; }
  /// Seconds the last generations took on average (for Retry-After); 0 before
  /// any.
  void generation_took(double seconds);
  double typical_generation_seconds() const;

 private:
  mutable std::mutex mutex_;
  std::atomic<bool> ready_{false}, failed_{false}, stopping_{false};
  int ranks_ = 0;
  RequestLimits limits_;
  std::string failure_;
  std::shared_ptr<Job> running_;
  const size_t keep_files_;
  std::deque<std::string> file_order_;
  std::unordered_map<std::string, std::pair<std::string, std::string>> files_;  // ext, bytes
  uint64_t file_ids_ = 0;
  std::atomic<uint64_t> job_ids_{0};
  double generation_seconds_ = 0;
};

}  // namespace spdit::cli
