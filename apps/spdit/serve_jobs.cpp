#include "serve_jobs.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace spdit::cli {

void Job::finish(int status, std::string body) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (done_) return;  // the first answer stands (a cancel racing a failure)
    done_ = true;
    status_ = status;
    body_ = std::move(body);
  }
  done_cv_.notify_all();
}

bool Job::wait_for(int ms) {
  std::unique_lock<std::mutex> lock(mutex_);
  return done_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return done_; });
}

int Job::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

std::string Job::body() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return body_;
}

JobQueue::Submitted JobQueue::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return Submitted::kClosed;
    if (jobs_.size() >= capacity_) return Submitted::kFull;
    jobs_.push_back(job);
  }
  cv_.notify_one();
  return Submitted::kQueued;
}

std::shared_ptr<Job> JobQueue::next(int ms) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return closed_ || !jobs_.empty(); });
  if (closed_ || jobs_.empty()) return nullptr;
  auto job = jobs_.front();
  jobs_.pop_front();
  return job;
}

void JobQueue::close(int status, const std::string& body) {
  std::deque<std::shared_ptr<Job>> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    waiting.swap(jobs_);
  }
  cv_.notify_all();
  for (auto& job : waiting) job->finish(status, body);
}

size_t JobQueue::depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size();
}

std::string error_body(const std::string& message, const std::string& type) {
  return nlohmann::json{{"error", {{"message", message}, {"type", type}}}}.dump();
}

}  // namespace spdit::cli
