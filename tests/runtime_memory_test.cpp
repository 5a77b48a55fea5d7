// The metered CPU allocator: exact live and peak tensor bytes.
#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include "spdit/runtime/memory_meter.h"

using namespace spdit;

namespace {
// Other test threads may allocate meanwhile only if a test runs ranks; these
// tests run alone on their thread, so counts are exact.
constexpr int64_t kFloats = 1 << 20;
constexpr int64_t kBytes = kFloats * 4;
}  // namespace

TEST(MemoryMeter, CountsLiveAndPeakBytesOfTensors) {
  install_memory_meter();
  install_memory_meter();  // a second call changes nothing
  ASSERT_TRUE(memory_meter_installed());
  const int64_t base = reset_tensor_bytes_peak();
  {
    auto a = at::empty({kFloats});
    EXPECT_EQ(tensor_bytes_live(), base + kBytes);
    {
      auto b = at::ones({2 * kFloats});
      EXPECT_EQ(tensor_bytes_live(), base + 3 * kBytes);
      EXPECT_EQ(b.data_ptr<float>()[2 * kFloats - 1], 1.0f);  // the memory is usable
    }
    EXPECT_EQ(tensor_bytes_live(), base + kBytes);
    EXPECT_EQ(tensor_bytes_peak(), base + 3 * kBytes);
    auto view = a.narrow(0, 0, 10);  // a view allocates nothing
    EXPECT_EQ(tensor_bytes_live(), base + kBytes);
  }
  EXPECT_EQ(tensor_bytes_live(), base);
  EXPECT_EQ(tensor_bytes_peak(), base + 3 * kBytes);
  EXPECT_EQ(reset_tensor_bytes_peak(), base);
  EXPECT_EQ(tensor_bytes_peak(), base);
}

TEST(MemoryMeter, ResizedAndTemporaryTensorsAreCounted) {
  install_memory_meter();
  const int64_t base = reset_tensor_bytes_peak();
  auto x = at::randn({256, 256});
  auto y = at::mm(x, x) + 1;  // the product is a temporary freed by the add
  EXPECT_EQ(tensor_bytes_live(), base + 2 * 256 * 256 * 4);
  EXPECT_GE(tensor_bytes_peak(), base + 3 * 256 * 256 * 4);
  y.resize_({512, 512});
  EXPECT_EQ(tensor_bytes_live(), base + 256 * 256 * 4 + 512 * 512 * 4);
}

TEST(MemoryMeter, RawAllocateAndDeallocateStillWork) {
  install_memory_meter();
  const int64_t base = tensor_bytes_live();
  c10::Allocator* alloc = c10::GetCPUAllocator();
  void* p = alloc->raw_allocate(1000);
  ASSERT_NE(p, nullptr);
  static_cast<char*>(p)[999] = 1;
  EXPECT_EQ(tensor_bytes_live(), base + 1000);
  alloc->raw_deallocate(p);
  EXPECT_EQ(tensor_bytes_live(), base);
}
