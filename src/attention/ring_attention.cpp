#include "sp_attention_parts.h"

#include "spdit/runtime/comm.h"
#include "spdit/runtime/fault_injection.h"

namespace spdit::detail {

at::Tensor join_seq(const at::Tensor& text, const at::Tensor& image, bool front) {
  return front ? at::cat({text, image}, 1) : at::cat({image, text}, 1);
}

at::Tensor join_mask(const at::Tensor& image_mask, int64_t text_len, bool front) {
  if (!image_mask.defined()) return image_mask;
  auto ones = at::ones({image_mask.size(0), text_len}, image_mask.options().dtype(at::kBool));
  return join_seq(ones, image_mask.to(at::kBool), front);
}

at::Tensor pad_heads(const at::Tensor& x, int64_t heads) {
  if (x.size(2) == heads) return x;
  auto shape = x.sizes().vec();
  shape[2] = heads - x.size(2);
  return at::cat({x, at::zeros(shape, x.options())}, 2);
}

AttentionState ring_attention(const Group& ring, const at::Tensor& q, at::Tensor k, at::Tensor v,
                              const at::Tensor& key_mask, const LocalAttentionOptions& local) {
  const int r = ring.size();
  // The mask travels as bytes beside its K/V block. k and v are taken over,
  // so a block the caller no longer holds is freed once it has been passed on.
  k = k.contiguous();
  v = v.contiguous();
  std::vector<at::Tensor> block{std::move(k), std::move(v)};
  if (key_mask.defined()) block.push_back(key_mask.to(at::kBool).contiguous());
  AttentionState state;
  for (int step = 0; step < r; ++step) {
    // Start passing this block on before computing with it: the transfer of
    // the next block overlaps this block's compute.
    std::optional<RingExchange> next;
    if (step + 1 < r) next.emplace(ring, block);
    if (next) fault_point("ring_step", ring.ranks()[ring.rank()]);
    LocalAttentionOptions o = local;
    o.key_padding_mask = key_mask.defined() ? block[2] : at::Tensor();
    if (step == 0) {
      state = local_attention(q, block[0], block[1], o);
    } else {
      local_attention_(state, q, block[0], block[1], o);  // continues the softmax in place
    }
    if (next) block = next->wait();
  }
  return state;
}

}  // namespace spdit::detail
