#include "serve_state.h"

#include <cstdio>
#include <random>

namespace spdit::cli {

void ServeState::set_ready(const RequestLimits& limits, int ranks) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    limits_ = limits;
    ranks_ = ranks;
  }
  ready_ = true;
}

RequestLimits ServeState::limits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return limits_;
}

void ServeState::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failed_) return;
    failure_ = message;
    failed_ = true;
  }
  const std::string body = error_body(message, "rank_failed");
  queue.close(503, body);
  if (auto job = running()) job->finish(503, body);
}

std::string ServeState::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void ServeState::begin_stopping() {
  if (stopping_.exchange(true)) return;
  queue.close(503, error_body("the server is shutting down (SIGTERM or "
                              "SIGINT); send the request again once it "
                              "is back",
                              "shutting_down"));
}

void ServeState::set_running(std::shared_ptr<Job> job) {
  std::lock_guard<std::mutex> lock(mutex_);
  running_ = std::move(job);
}

std::shared_ptr<Job> ServeState::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

std::string ServeState::keep_file(std::string bytes, const std::string& ext) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Ids that cannot be guessed: a file is its requester's, not a listing.
  static std::mt19937_64 random{std::random_device{}()};
  char id[40];
  std::snprintf(id, sizeof id, "%06llx%016llx",
                static_cast<unsigned long long>(++file_ids_ & 0xffffff),
                static_cast<unsigned long long>(random()));
  files_[id] = {ext, std::move(bytes)};
  file_order_.push_back(id);
  while (file_order_.size() > keep_files_) {
    files_.erase(file_order_.front());
    file_order_.pop_front();
  }
  return id;
}

bool ServeState::find_file(const std::string& id, const std::string& ext,
                           std::string& bytes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = files_.find(id);
  if (found == files_.end() || found->second.first != ext) return false;
  bytes = found->second.second;
  return true;
}

void ServeState::generation_took(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  generation_seconds_ =
      generation_seconds_ == 0 ? seconds : 0.7 * generation_seconds_ + 0.3 * seconds;
}

double ServeState::typical_generation_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return generation_seconds_;
}

}  // namespace spdit::cli
