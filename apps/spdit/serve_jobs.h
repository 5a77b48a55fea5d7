#pragma once
// `spdit serve`, rank 0: the requests between the HTTP threads and the
// generation loop. One generation at a time; a bounded queue behind it.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "serve_request.h"

namespace spdit::cli {

/// One request's life: queued, running (step by step), answered.
struct Job {
  uint64_t id = 0;
  ImageRequest request;   // a picture request, or
  bool is_video = false;  // a video request:
  VideoRequest video;
  std::atomic<bool> cancelled{false};  // its client left: stop at the next step
  std::atomic<int> image{0}, step{0}, steps{0};
  // The pictures (PNG bytes) and their seeds: written by the loop before
  // finish(200, ...), read by the handler after wait_for (the mutex orders
  // them).
  std::vector<std::string> pngs;
  std::vector<uint64_t> seeds;
  std::string mp4;  // the video (MP4 bytes) of a video request

  /// The answer: HTTP status and body (JSON). Wakes the waiting handler.
  void finish(int status, std::string body);
  /// Waits up to `ms` for the answer; true once it is there.
  bool wait_for(int ms);
  int status() const;
  std::string body() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  int status_ = 0;
  std::string body_;
};

/// The waiting line. Full: submit() refuses (the client gets 429).
class JobQueue {
 public:
  explicit JobQueue(size_t capacity) : capacity_(capacity) {}
  enum class Submitted { kQueued, kFull, kClosed };
  Submitted submit(const std::shared_ptr<Job>& job);
  /// The next job, or null after `ms` without one (or once closed).
  std::shared_ptr<Job> next(int ms);
  /// Refuses new jobs from now on and answers the waiting ones (status, body).
  void close(int status, const std::string& body);
  size_t depth() const;
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool closed_ = false;
};

/// {"error": {"message": ..., "type": ...}} as OpenAI's API answers errors.
std::string error_body(const std::string& message, const std::string& type);

}  // namespace spdit::cli
