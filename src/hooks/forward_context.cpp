#include "spdit/hooks/forward_context.h"

#include <stdexcept>
#include <string>

namespace spdit {
namespace {
thread_local ForwardContext* g_context = nullptr;
}

ForwardContext* ForwardContext::current() { return g_context; }

void ForwardContext::record_padding(int64_t original, int64_t padded) {
  for (const auto& p : paddings_) {
    if (p.padded != padded) continue;
    if (p.original == original) return;
    throw std::invalid_argument(
        "spdit: auto_pad padded sequences of " + std::to_string(p.original) + " and " +
        std::to_string(original) + " tokens both to " + std::to_string(padded) +
        "; a later gather cannot tell which length to trim to. Give them the same length or "
        "pad one of them in the model");
  }
  paddings_.push_back({original, padded});
}

std::optional<int64_t> ForwardContext::original_length(int64_t padded) const {
  for (const auto& p : paddings_) {
    if (p.padded == padded) return p.original;
  }
  return std::nullopt;
}

at::Tensor ForwardContext::key_padding_mask(int64_t padded) const {
  auto original = original_length(padded);
  if (!original || *original == padded) return at::Tensor();
  return at::arange(padded, at::kLong) < *original;
}

ForwardScope::ForwardScope() {
  if (!g_context) {
    owned_ = new ForwardContext();
    g_context = owned_;
  }
}

ForwardScope::~ForwardScope() {
  if (owned_) {
    g_context = nullptr;
    delete owned_;
  }
}

SpRegionScope::SpRegionScope(const SequenceParallelConfig& config) {
  ForwardContext& ctx = context();
  ctx.config = &config;
  ctx.set_sp_active(true);
}

}  // namespace spdit
