#include "spdit/attention/attention.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "sp_attention_parts.h"
#include "spdit/hooks/forward_context.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/fault_injection.h"

namespace spdit {
namespace {

using detail::join_mask;
using detail::join_seq;

void check_text(const JointText* text, const at::Tensor& q) {
  if (!text) return;
  if (!text->q.defined() || !text->k.defined() || !text->v.defined()) {
    throw std::invalid_argument("spdit: attention: JointText needs q, k and v");
  }
  if (text->q.dim() != 4 || text->q.size(0) != q.size(0) || text->q.size(2) != q.size(2) ||
      text->q.size(3) != q.size(3) || text->k.sizes() != text->q.sizes() ||
      text->v.sizes() != text->q.sizes()) {
    throw std::invalid_argument(
        "spdit: attention: text q/k/v " + std::string(c10::str(text->q.sizes())) +
        " must be (B, T, H, D) with the image's B, H and D " + std::string(c10::str(q.sizes())));
  }
}

// Single-device attention (or a skipped one). Text queries join the image's;
// text keys continue the softmax after the image keys, as on the SP path.
at::Tensor local_path(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const AttentionOptions& opts, const JointText* text,
                      const AttentionMasks& masks) {
  const bool front = opts.joint_strategy() == JointStrategy::kFront;
  LocalAttentionOptions o;
  o.scale = opts.scale();
  o.attn_mask = masks.attn_mask;
  o.key_padding_mask = masks.key_padding_mask;
  if (!text) return local_attention(q, k, v, o).out;
  if (o.attn_mask.defined()) {
    // A dense mask is over the joined sequence: keys must be joined too.
    o.key_padding_mask = join_mask(masks.key_padding_mask, text->k.size(1), front);
    return local_attention(join_seq(text->q, q, front), join_seq(text->k, k, front),
                           join_seq(text->v, v, front), o)
        .out;
  }
  const auto dtype = q.scalar_type();
  o.out_fp32 = true;
  auto joint_q = join_seq(text->q, q, front);
  auto state = local_attention(joint_q, k, v, o);
  LocalAttentionOptions t;
  t.scale = o.scale;
  local_attention_(state, joint_q, text->k, text->v, t);
  return state.out.to(dtype);
}

// The key mask of this rank's shard: the caller's, and auto_pad's padding.
at::Tensor shard_key_mask(const ForwardContext& ctx, const SequenceParallelConfig& cfg,
                          const at::Tensor& k, const at::Tensor& user_mask) {
  const int64_t s_local = k.size(1), p = cfg.get_world_size();
  at::Tensor mask = user_mask.defined() ? user_mask.to(at::kBool) : at::Tensor();
  if (mask.defined() && (mask.dim() != 2 || mask.size(1) != s_local)) {
    throw std::invalid_argument(
        "spdit: attention: key_padding_mask " + std::string(c10::str(mask.sizes())) +
        " should be (B, S) for this rank's " + std::to_string(s_local) + " keys");
  }
  auto full = ctx.key_padding_mask(s_local * p);
  if (full.defined()) {
    auto mine = full.narrow(0, cfg.get_rank() * s_local, s_local).unsqueeze(0);
    mask = mask.defined() ? mask.logical_and(mine) : mine;
  }
  return mask;
}

// Text that attention uses whole (joint text, a cross-attention's context)
// must be the same on every rank; a plan that splits it gives each rank
// other rows, and the result is wrong by a little, silently. One exchange of
// a fingerprint per text length and forward tells.
void check_replicated(ForwardContext& ctx, const SequenceParallelConfig& cfg, const at::Tensor& x,
                      const std::string& what) {
  const int64_t len = x.size(1);
  if (!ctx.replicated_text_checked.insert(len).second) return;
  auto d = x.detach().to(at::kDouble);
  const double sum = d.sum().item<double>(), abs = d.abs().sum().item<double>();
  auto bits = [](double v) {
    int64_t b;
    std::memcpy(&b, &v, sizeof b);
    return b;
  };
  auto value = [](int64_t b) {
    double v;
    std::memcpy(&v, &b, sizeof v);
    return v;
  };
  auto all = all_gather_ints(cfg.state().sp_group(), {len, bits(sum), bits(abs)});
  const double sum0 = value(all[1]), abs0 = value(all[2]);
  const double tol = 1e-6 * abs0 + 1e-30;
  for (size_t r = 1; r * 3 < all.size(); ++r) {
    const double s = value(all[r * 3 + 1]), a = value(all[r * 3 + 2]);
    if (std::abs(s - sum0) <= tol && std::abs(a - abs0) <= tol) continue;
    throw std::invalid_argument(
        "spdit: attention: " + what + " (" + std::to_string(len) +
        " tokens) differs between the SP ranks (sp_rank 0 and " + std::to_string(r) +
        "): it must be the same on every rank, so it was split. Text that attention uses whole "
        "is never split: remove its entry from the plan (split only the image/video sequence "
        "and its RoPE). This forward's splits: " +
        ctx.shard_lengths());
  }
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const AttentionOptions& opts, const JointText* text,
                     const AttentionMasks& masks) {
  check_text(text, q);
  ForwardContext* ctx = ForwardContext::current();
  const bool in_region =
      ctx && ctx->sp_active() && ctx->config && ctx->config->get_world_size() > 1;
  if (in_region && opts.skip_sp()) {
    check_replicated(*ctx, *ctx->config, k, "the context (keys) of a skip_sp cross-attention");
  }
  if (!in_region || opts.skip_sp()) return local_path(q, k, v, opts, text, masks);
  if (masks.attn_mask.defined()) {
    throw std::invalid_argument(
        "spdit: attention: a dense attn_mask cannot be sharded across ranks; inside the SP "
        "region pass a key_padding_mask, or mark this attention skip_sp");
  }
  if (q.sizes() != k.sizes() || k.sizes() != v.sizes()) {
    throw std::invalid_argument(
        "spdit: attention inside the SP region is self-attention over the "
        "sharded sequence: q, k, v must share (B, S, H, D); got q " +
        std::string(c10::str(q.sizes())) + ", k " + std::string(c10::str(k.sizes())) +
        ". Cross-attention to replicated text: set skip_sp");
  }
  const SequenceParallelConfig& cfg = *ctx->config;
  // Inside the SP region, q is exactly this rank's shard of a sequence the
  // plan split; anything else (text concatenated to the shard, a sequence
  // the plan never split) would attend the wrong keys.
  if (!ctx->splits().empty() && !ctx->is_shard_length(q.size(1))) {
    throw std::invalid_argument(
        "spdit: attention inside the SP region received " + std::to_string(q.size(1)) +
        " tokens per rank (q " + std::string(c10::str(q.sizes())) +
        "), but this forward's splits left shards of " + ctx->shard_lengths() +
        ". Pass exactly this rank's shard, laid out (B, S, H, D); text that every rank holds "
        "whole joins it through spdit::JointText (attention(q, k, v, options, &text)), not by "
        "concatenating it to the shard");
  }
  if (text) check_replicated(*ctx, cfg, text->k, "JointText");
  const ParallelState& st = cfg.state();
  fault_point("attention", st.world().rank());
  const int64_t u = cfg.get_ulysses_world_size();
  const int64_t heads = q.size(2);
  const int64_t padded_heads = (heads + u - 1) / u * u;
  const int64_t local_heads = padded_heads / u;
  const bool front = opts.joint_strategy() == JointStrategy::kFront;
  const auto dtype = q.scalar_type();

  at::Tensor mask = shard_key_mask(*ctx, cfg, k, masks.key_padding_mask);
  at::Tensor ql = q, kl = k, vl = v;
  if (u > 1) {
    // Ulysses: scatter heads, gather the sequence. Q, K and V go one at a
    // time: each then needs only its own send buffer, and arrives (for B = 1)
    // already in the layout the kernel reads, where one stacked exchange held
    // four copies of all three at once. Heads that do not divide by U are
    // zero-padded and sliced off after.
    auto exchange = [&](const at::Tensor& x) {
      return all_to_all(st.ulysses_group(), detail::pad_heads(x, padded_heads), /*scatter=*/2,
                        /*gather=*/1);
    };
    ql = exchange(q);
    kl = exchange(k);
    vl = exchange(v);
    if (mask.defined()) {
      // (1, S) when only auto_pad's mask applies, (B, S) with a caller's mask.
      mask = all_gather(st.ulysses_group(), mask.contiguous(), 1);
    }
  }
  at::Tensor text_k, text_v;
  if (text) {
    // This rank's heads of the replicated text; its queries join the image's.
    const int64_t h0 = cfg.get_ulysses_rank() * local_heads;
    auto slice = [&](const at::Tensor& t) {
      return detail::pad_heads(t, padded_heads).narrow(2, h0, local_heads);
    };
    text_k = slice(text->k);
    text_v = slice(text->v);
    ql = join_seq(slice(text->q), ql, front);
  }

  // Image keys first (around the ring when R > 1), then the text keys
  // continue the same online softmax exactly once: they are never copied into
  // an image block, and never counted on more than one ring step.
  LocalAttentionOptions local;
  local.scale = opts.scale();
  // Merges (ring steps, text) happen in fp32 or the input dtype as configured;
  // without ring steps the kernel's fp32 output is kept until the end.
  local.out_fp32 = cfg.convert_to_fp32 || cfg.get_ring_world_size() == 1;
  AttentionState state;
  if (cfg.get_ring_world_size() > 1) {
    state = detail::ring_attention(st.ring_group(), ql, std::move(kl), std::move(vl), mask, local);
  } else {
    local.key_padding_mask = mask;
    state = local_attention(ql, kl, vl, local);
    kl = vl = at::Tensor();  // after Ulysses, the gathered K/V: not needed past here
  }
  if (text) {
    LocalAttentionOptions t;
    t.scale = local.scale;
    local_attention_(state, ql, text_k, text_v, t);
  }
  at::Tensor out = state.out.to(dtype);
  at::Tensor text_out;
  if (text) {
    const int64_t t = text->q.size(1);
    const int64_t s = out.size(1) - t;
    text_out = front ? out.narrow(1, 0, t) : out.narrow(1, s, t);
    out = front ? out.narrow(1, t, s) : out.narrow(1, 0, s);
  }
  if (u > 1) {
    out = all_to_all(st.ulysses_group(), out.contiguous(), /*scatter=*/1, /*gather=*/2)
              .narrow(2, 0, heads);
    // Every Ulysses rank computed the text rows for its own heads.
    if (text)
      text_out = all_gather(st.ulysses_group(), text_out.contiguous(), 2).narrow(2, 0, heads);
  }
  return text ? join_seq(text_out, out, front).contiguous() : out.contiguous();
}

}  // namespace spdit
