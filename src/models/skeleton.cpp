#include "spdit/models/skeleton.h"

#include "../runtime/torch_compat.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <sys/mman.h>

#include <new>

namespace spdit::models {
namespace {

thread_local int g_depth = 0;

// Anonymous private mappings with MAP_NORESERVE: the kernel backs a page
// only when it is first written, and munmap gives everything back.
class LazyPagesAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) SPDIT_ALLOCATE_CONST override {
    if (n == 0) return {nullptr, nullptr, &release_empty, c10::Device(c10::kCPU)};
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto* ctx = new Mapping{p, n};
    return {p, ctx, &release, c10::Device(c10::kCPU)};
  }
  SPDIT_ALLOCATOR_COPY_DATA
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

 private:
  struct Mapping {
    void* data;
    size_t size;
  };
  static void release(void* ctx) {
    auto* m = static_cast<Mapping*>(ctx);
    munmap(m->data, m->size);
    delete m;
  }
  static void release_empty(void*) {}
};

LazyPagesAllocator g_lazy;

}  // namespace

SkeletonScope::SkeletonScope() { ++g_depth; }
SkeletonScope::~SkeletonScope() { --g_depth; }
bool SkeletonScope::active() { return g_depth > 0; }

at::Tensor lazy_empty(at::IntArrayRef shape, at::ScalarType dtype) {
  return at::detail::empty_generic(shape, &g_lazy, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   dtype, c10::nullopt);
}

}  // namespace spdit::models
