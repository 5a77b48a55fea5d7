#pragma once
// Exact activation memory: live and peak bytes of CPU tensors, counted by
// wrapping c10's CPU allocator. Unlike the resident set size, this ignores
// what glibc keeps cached after a free, so a peak measured here is what the
// tensors of a forward really held at once.
//
//   install_memory_meter();             // once, before the tensors to count
//   const int64_t before = reset_tensor_bytes_peak();
//   model.call(...);
//   const int64_t activations = tensor_bytes_peak() - before;
//
// Counters are per process: ranks run as separate processes are counted apart,
// ranks run as threads of one process are counted together. CUDA tensors are
// not counted (their caching allocator keeps its own statistics).
#include <cstdint>
#include <stdexcept>
#include <string>

namespace spdit {

/// Wraps the CPU allocator; later calls do nothing. Tensors allocated before
/// it are freed as usual and never counted.
void install_memory_meter();
bool memory_meter_installed();

/// Bytes of counted CPU tensors alive now.
int64_t tensor_bytes_live();
/// Highest tensor_bytes_live() since install or the last reset.
int64_t tensor_bytes_peak();
/// Starts a new peak at what is alive now, and returns that.
int64_t reset_tensor_bytes_peak();

/// Thrown by the metered allocator when a tensor would take the live bytes
/// past the limit: the allocation is refused before the operating system's
/// out-of-memory killer ends the process without a word.
class TensorMemoryLimitExceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "47.6 GB", "37.0 MB": byte counts in messages.
std::string format_bytes(int64_t bytes);

/// Refuses (TensorMemoryLimitExceeded) any tensor that would take the live
/// bytes above `bytes`; 0 removes the limit. Needs install_memory_meter().
/// `share` says in the message where the limit comes from.
void set_tensor_bytes_limit(int64_t bytes, const std::string& share = "");

}  // namespace spdit
