#pragma once
// Private pieces of sequence-parallel attention.
#include <ATen/ATen.h>

#include "spdit/attention/local_attention.h"
#include "spdit/runtime/world.h"

namespace spdit::detail {

/// Concatenates text and image along the sequence per strategy.
at::Tensor join_seq(const at::Tensor& text, const at::Tensor& image, bool front);

/// Key mask over [text, image] keys: text keys are always valid.
at::Tensor join_mask(const at::Tensor& image_mask, int64_t text_len, bool front);

/// Ring attention over `ring`: K/V (and their key mask) circulate with
/// asynchronous send/recv, the next block's transfer overlapping the current
/// block's compute; each block continues the online softmax of the ones
/// before (in place, no merge pass). k and v are taken over: move them in to
/// let them go once passed on.
AttentionState ring_attention(const Group& ring, const at::Tensor& q, at::Tensor k, at::Tensor v,
                              const at::Tensor& key_mask, const LocalAttentionOptions& local);

/// Zero-pads dim 2 (heads) to `heads`.
at::Tensor pad_heads(const at::Tensor& x, int64_t heads);

}  // namespace spdit::detail
