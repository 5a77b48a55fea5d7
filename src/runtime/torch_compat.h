#pragma once
// The few LibTorch interfaces that differ between Debian's 1.13 (the build
// here) and the 2.x of CUDA wheels: one place decides, by the version the
// headers declare, so that no source file needs its own #if.
#include <torch/version.h>

#define SPDIT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||        \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// 2.3 made c10::Allocator::allocate non-const and added copy_data; an
// allocator of ours declares both through these.
#if SPDIT_TORCH_AT_LEAST(2, 3)
#define SPDIT_ALLOCATE_CONST
#define SPDIT_ALLOCATOR_COPY_DATA                                                 \
  void copy_data(void* dest, const void* src, std::size_t count) const override { \
    default_copy_data(dest, src, count);                                          \
  }
#else
#define SPDIT_ALLOCATE_CONST const
#define SPDIT_ALLOCATOR_COPY_DATA
#endif
