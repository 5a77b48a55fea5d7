#include "spdit/runtime/memory_meter.h"

#include "torch_compat.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace spdit {
namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};
std::atomic<int64_t> g_limit{0};
std::string g_limit_share;  // set before the limit, read only when it is hit

std::string gb(int64_t bytes) { return format_bytes(bytes); }

void raise_peak(int64_t live) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

// Each block carries its size in a header of one alignment unit in front of
// the data, so that the deleter needs nothing but the data pointer: that keeps
// data == context, which c10's raw_allocate/raw_deallocate rely on.
constexpr size_t kHeader = 64;  // c10's CPU alignment

c10::Allocator* g_inner = nullptr;

void free_counted(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kHeader;
  g_live.fetch_sub(*reinterpret_cast<int64_t*>(base), std::memory_order_relaxed);
  g_inner->raw_deleter()(base);
}

class MeteredCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) SPDIT_ALLOCATE_CONST override {
    const int64_t limit = g_limit.load(std::memory_order_relaxed);
    const int64_t live = g_live.load(std::memory_order_relaxed);
    if (limit > 0 && live + static_cast<int64_t>(n) > limit) {
      throw TensorMemoryLimitExceeded(
          "out of memory: a tensor of " + gb(static_cast<int64_t>(n)) + " on top of the " +
          gb(live) + " this rank holds needs more than the " + gb(limit) + " it may use" +
          g_limit_share +
          ". Ask for less (smaller sizes, a smaller model) or spread the work over "
          "more ranks");
    }
    char* base = static_cast<char*>(g_inner->raw_allocate(n + kHeader));
    *reinterpret_cast<int64_t*>(base) = static_cast<int64_t>(n);
    raise_peak(g_live.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed) +
               static_cast<int64_t>(n));
    void* data = base + kHeader;
    return {data, data, &free_counted, c10::Device(c10::DeviceType::CPU)};
  }
  SPDIT_ALLOCATOR_COPY_DATA
  c10::DeleterFnPtr raw_deleter() const override { return &free_counted; }
};

}  // namespace

void install_memory_meter() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_inner = c10::GetCPUAllocator();
    // Without a raw deleter the wrapped allocator's blocks cannot be freed
    // from their pointer alone; then nothing is counted.
    if (g_inner->raw_deleter() == nullptr) return;
    static MeteredCpuAllocator metered;
    // The highest priority, so that nothing registered later replaces us.
    c10::SetCPUAllocator(&metered, /*priority=*/255);
    g_installed = true;
  });
}

bool memory_meter_installed() { return g_installed; }

int64_t tensor_bytes_live() { return g_live.load(std::memory_order_relaxed); }

int64_t tensor_bytes_peak() { return g_peak.load(std::memory_order_relaxed); }

int64_t reset_tensor_bytes_peak() {
  const int64_t live = g_live.load(std::memory_order_relaxed);
  g_peak.store(live, std::memory_order_relaxed);
  return live;
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  }
  return buf;
}

void set_tensor_bytes_limit(int64_t bytes, const std::string& share) {
  g_limit_share = share.empty() ? "" : " (" + share + ")";
  g_limit.store(bytes, std::memory_order_relaxed);
}

}  // namespace spdit
