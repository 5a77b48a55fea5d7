#pragma once
// A model's structure without its weights' memory: within a SkeletonScope,
// the large layers (Linear) get uninitialised parameters on pages the
// operating system reserves but does not back until they are written. A
// real-size model then costs almost nothing until a checkpoint's tensors
// replace its parameters (load_weights does, in place), and its names and
// shapes can be listed (`spdit explain`, `spdit inspect`) without allocating.
//
//   SkeletonScope skeleton;
//   FluxTransformer model(FluxConfig::preset("full"));   // ~0 resident
//   load_weights(*model, "flux1-dev.safetensors");       // the file's pages
#include <ATen/ATen.h>

namespace spdit::models {

class SkeletonScope {
 public:
  SkeletonScope();
  ~SkeletonScope();
  SkeletonScope(const SkeletonScope&) = delete;
  SkeletonScope& operator=(const SkeletonScope&) = delete;
  /// Whether a scope is open on this thread.
  static bool active();
};

/// An uninitialised CPU tensor on untouched, unreserved pages (zeros when
/// read): it takes resident memory only where it is written. Not counted by
/// the memory meter, which counts what is live, not what is reserved.
at::Tensor lazy_empty(at::IntArrayRef shape, at::ScalarType dtype);

}  // namespace spdit::models
