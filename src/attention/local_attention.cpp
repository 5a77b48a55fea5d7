#include "spdit/attention/local_attention.h"

#include "bf16_kernel.h"
#include "cache_blocking.h"
#include "device_attention.h"
#include "online_softmax_cpu.h"
#include "register_tiled_kernel.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

// OpenBLAS (when LibTorch runs on it): its own thread pool must not be used
// from inside our per-head parallel loop, or the calls queue on its lock.
extern "C" int openblas_get_num_threads(void) __attribute__((weak));
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace spdit {
namespace {

// While alive, BLAS calls run single-threaded (the heads are parallel instead).
class SingleThreadedBlas {
 public:
  explicit SingleThreadedBlas(bool active) {
    if (active && openblas_get_num_threads && openblas_set_num_threads) {
      saved_ = openblas_get_num_threads();
      if (saved_ > 1) openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    if (saved_ > 1) openblas_set_num_threads(saved_);
  }

 private:
  int saved_ = 0;
};

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) {
    throw std::invalid_argument(
        "spdit: attention expects (B, S, H, D) tensors, got q " + std::string(c10::str(q.sizes())) +
        ", k " + std::string(c10::str(k.sizes())) + ", v " + std::string(c10::str(v.sizes())));
  }
  if (k.sizes() != v.sizes() || q.size(0) != k.size(0) || q.size(2) != k.size(2) ||
      q.size(3) != k.size(3)) {
    throw std::invalid_argument("spdit: attention q " + std::string(c10::str(q.sizes())) + ", k " +
                                std::string(c10::str(k.sizes())) + " and v " +
                                std::string(c10::str(v.sizes())) +
                                " disagree on batch, heads or head dim");
  }
}

// The CPU hot path, one (batch, head) at a time. q and v are read, and the
// output written, in place in their (B, S, H, D) layout (rows H*D floats
// apart). The softmax scale goes into the exponent, so q is never copied to
// be scaled. Where the CPU allows, the register-tiled kernel runs each head
// (K and V packed once per head, into buffers each thread keeps); elsewhere
// BLAS GEMMs run it a (query block x key block) at a time, so that a score
// block stays in cache from its GEMM through the fused softmax to the second
// GEMM, reading K in place as a transposed operand.
//
// With `into`, the kernel continues an earlier result over other keys instead
// of starting afresh: a row with output O and LSE L resumes as running max
// L/scale, running sum 1 and accumulator O, which is exactly the state the
// online softmax would have reached, so no second output and no merge pass
// are needed (Ring attention's steps).
AttentionState cpu_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& key_bias, float scale, int64_t block_q,
                             int64_t block_k, AttentionState* into = nullptr) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), D = q.size(3), Sk = k.size(1);
  auto out = into ? into->out : at::empty({B, Sq, H, D}, q.options());
  auto lse = into ? into->lse : at::empty({B, H, Sq}, q.options());
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t ld = H * D;
  // Batch b's additive key mask (one row shared by all batches when it has one).
  auto bias_of = [&](int64_t b) -> const float* {
    return key_bias.defined() ? key_bias[key_bias.size(0) == 1 ? 0 : b].data_ptr<float>() : nullptr;
  };
  const auto kernel = detail::selected_cpu_kernel();
  if (detail::register_tiled(kernel, D)) {
    const int64_t key_block = detail::key_block(D, sizeof(float), detail::kScoreBlock);
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      const int64_t panel = detail::tile_columns(kernel);
      auto kt = at::empty({detail::packed_keys_size(Sk, D, panel)}, q.options());
      auto vp = at::empty({Sk, D}, q.options());
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        detail::pack_keys(k[b].select(1, h).data_ptr<float>(), ld, Sk, D, panel,
                          kt.data_ptr<float>());
        detail::pack_values(v[b].select(1, h).data_ptr<float>(), ld, Sk, D, panel,
                            vp.data_ptr<float>());
        detail::HeadOperands op;
        op.q = q[b].select(1, h).data_ptr<float>();
        op.kt = kt.data_ptr<float>();
        op.v = vp.data_ptr<float>();
        op.panel = panel;
        op.out = out[b].select(1, h).data_ptr<float>();
        op.ldq = op.ldo = ld;
        op.lse = lse[b][h].data_ptr<float>();
        op.bias = bias_of(b);
        op.sq = Sq;
        op.sk = Sk;
        op.d = D;
        op.scale = scale;
        op.resume = into != nullptr;
        op.key_block = key_block;
        detail::register_tiled_attention(kernel, op);
      }
    });
    return {out, lse};
  }
  SingleThreadedBlas blas(at::get_num_threads() > 1 && B * H > 1);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    // No bigger than the problem: a rank's shard is often smaller than a block.
    auto scores = at::empty({std::min(block_q, Sq), std::min(block_k, Sk)}, q.options());
    std::vector<float> m(block_q), l(block_q), alpha(block_q);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      auto qh = q.select(0, b).select(1, h), kh = k.select(0, b).select(1, h),
           vh = v.select(0, b).select(1, h);
      auto oh = out.select(0, b).select(1, h);  // (Sq, D), rows ld apart
      const float* bias = bias_of(b);
      float* lse_row = lse[b][h].data_ptr<float>();
      for (int64_t qs = 0; qs < Sq; qs += block_q) {
        const int64_t bq = std::min(block_q, Sq - qs);
        auto acc = oh.narrow(0, qs, bq);
        float* a = acc.data_ptr<float>();
        if (into) {
          for (int64_t i = 0; i < bq; ++i) {
            const float prev = lse_row[qs + i];
            const bool seen = prev != neg_inf;
            m[i] = seen ? prev / scale : neg_inf;
            l[i] = seen ? 1.0f : 0.0f;
            if (!seen) std::fill(a + i * ld, a + i * ld + D, 0.0f);
          }
        } else {
          acc.zero_();
          std::fill(m.begin(), m.end(), neg_inf);
          std::fill(l.begin(), l.end(), 0.0f);
        }
        auto qb = qh.narrow(0, qs, bq);
        for (int64_t ks = 0; ks < Sk; ks += block_k) {
          const int64_t bk = std::min(block_k, Sk - ks);
          // A partial block reuses the front of the buffer, rows bk apart.
          auto s = bq == scores.size(0) && bk == scores.size(1)
                       ? scores
                       : scores.view(-1).narrow(0, 0, bq * bk).view({bq, bk});
          at::mm_out(s, qb, kh.narrow(0, ks, bk).t());
          detail::online_softmax_rows(s.data_ptr<float>(), bq, bk, bk, bias ? bias + ks : nullptr,
                                      scale, m.data(), l.data(), alpha.data());
          detail::scale_rows(a, bq, D, ld, alpha.data());
          acc.addmm_(s, vh.narrow(0, ks, bk));
        }
        for (int64_t i = 0; i < bq; ++i) {
          const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
          for (int64_t j = 0; j < D; ++j) a[i * ld + j] *= inv;
          lse_row[qs + i] = l[i] > 0 ? m[i] * scale + std::log(l[i]) : neg_inf;
        }
      }
    }
  });
  return {out, lse};
}

// The same for bf16 q, k, v on a CPU with AVX512-BF16 (see bf16_kernel.h):
// q is read in place, K and V packed per head into the pair-interleaved
// layout of the bf16 dot product, the output accumulates in fp32 (`into`'s,
// or a new fp32 tensor the caller converts).
AttentionState cpu_attention_bf16(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& key_bias, float scale,
                                  AttentionState* into = nullptr) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), D = q.size(3), Sk = k.size(1);
  const auto f32 = q.options().dtype(at::kFloat);
  auto out = into ? into->out : at::empty({B, Sq, H, D}, f32);
  auto lse = into ? into->lse : at::empty({B, H, Sq}, f32);
  const int64_t ld = H * D;
  const int64_t key_block = detail::key_block(D, sizeof(uint16_t), detail::kScoreBlock);
  auto bits = [](const at::Tensor& t) {
    return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
  };
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint16_t> kt(detail::packed_keys_bf16_size(Sk, D)),
        vp(detail::packed_values_bf16_size(Sk, D));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      detail::pack_keys_bf16(bits(k) + (b * Sk * H + h) * D, ld, Sk, D, kt.data());
      detail::pack_values_bf16(bits(v) + (b * Sk * H + h) * D, ld, Sk, D, vp.data());
      detail::Bf16HeadOperands op;
      op.q = bits(q) + (b * Sq * H + h) * D;
      op.ldq = ld;
      op.kt = kt.data();
      op.v = vp.data();
      op.out = out[b].select(1, h).data_ptr<float>();
      op.ldo = ld;
      op.lse = lse[b][h].data_ptr<float>();
      op.bias =
          key_bias.defined() ? key_bias[key_bias.size(0) == 1 ? 0 : b].data_ptr<float>() : nullptr;
      op.sq = Sq;
      op.sk = Sk;
      op.d = D;
      op.scale = scale;
      op.resume = into != nullptr;
      op.key_block = key_block;
      detail::bf16_attention(op);
    }
  });
  return {out, lse};
}

}  // namespace

LocalAttentionPath local_attention_path(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const LocalAttentionOptions& o) {
  // The fused CPU kernels are for inference; with autograd recording, the
  // ATen path (same algorithm) keeps gradients flowing.
  const bool recording =
      at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (o.attn_mask.defined() || recording) return LocalAttentionPath::kAtenOps;
  if (q.device().is_cpu()) return LocalAttentionPath::kFusedCpu;
  const bool same_dtype = k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type();
  return q.is_cuda() && same_dtype &&
                 detail::device_kernel(q, o.key_padding_mask.defined()) !=
                     detail::DeviceKernel::kAten
             ? LocalAttentionPath::kFusedDevice
             : LocalAttentionPath::kAtenOps;
}

std::string local_attention_device_kernel(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const LocalAttentionOptions& o) {
  switch (local_attention_path(q, k, v, o)) {
    case LocalAttentionPath::kFusedCpu:
      return "cpu";
    case LocalAttentionPath::kFusedDevice:
      return detail::device_kernel_name(detail::device_kernel(q, o.key_padding_mask.defined()));
    case LocalAttentionPath::kAtenOps:
      break;
  }
  return "aten";
}

namespace {

// Whether `acc` can be continued in place by the fused kernel.
bool continuable(const AttentionState& acc, const at::Tensor& q) {
  const auto& out = acc.out;
  return out.scalar_type() == at::kFloat && out.is_contiguous() && out.sizes() == q.sizes() &&
         acc.lse.scalar_type() == at::kFloat && acc.lse.is_contiguous() &&
         acc.lse.sizes() == at::IntArrayRef({q.size(0), q.size(2), q.size(1)});
}

// local_attention, or with `into` its continuation (see cpu_attention).
AttentionState attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      const LocalAttentionOptions& o, AttentionState* into) {
  check_qkv(q, k, v);
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), D = q.size(3), Sk = k.size(1);
  const double scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(D)));
  const auto f32 = q.options().dtype(at::kFloat);
  const float neg_inf = -std::numeric_limits<float>::infinity();

  at::Tensor kpm;
  if (o.key_padding_mask.defined()) {
    kpm = o.key_padding_mask.to(at::kBool);
    if (kpm.dim() != 2 || kpm.size(1) != Sk || (kpm.size(0) != B && kpm.size(0) != 1)) {
      throw std::invalid_argument("spdit: key_padding_mask " + std::string(c10::str(kpm.sizes())) +
                                  " should be (B, Sk) or (1, Sk) with Sk = " + std::to_string(Sk));
    }
    kpm = kpm.view({kpm.size(0), 1, 1, Sk});
  }
  at::Tensor am;
  if (o.attn_mask.defined()) {
    am = o.attn_mask.to(at::kBool);
    while (am.dim() < 4) am = am.unsqueeze(0);
  }

  const auto path = local_attention_path(q, k, v, o);
  const bool fused = path == LocalAttentionPath::kFusedCpu;
  if (into && !(fused && scale > 0 && continuable(*into, q))) {
    merge_attention_(*into, attend(q, k, v, o, nullptr));
    return *into;
  }
  if (path == LocalAttentionPath::kFusedDevice) {
    auto st =
        detail::device_attention(detail::device_kernel(q, kpm.defined()), q, k, v,
                                 kpm.defined() ? kpm.view({kpm.size(0), Sk}) : at::Tensor(), scale);
    return {o.out_fp32 ? st.out.to(at::kFloat) : st.out, st.lse};
  }
  if (fused) {
    at::Tensor bias;
    if (kpm.defined()) {
      bias = at::zeros({kpm.size(0), Sk}, f32)
                 .masked_fill_(kpm.view({kpm.size(0), Sk}).logical_not(), neg_inf);
    }
    const bool bf16 = q.scalar_type() == at::kBFloat16 && k.scalar_type() == at::kBFloat16 &&
                      v.scalar_type() == at::kBFloat16 && detail::bf16_kernel_runs(D) &&
                      detail::bf16_kernel_selected();
    auto st = bf16 ? cpu_attention_bf16(q.contiguous(), k.contiguous(), v.contiguous(), bias,
                                        static_cast<float>(scale), into)
                   : cpu_attention(q.to(at::kFloat).contiguous(), k.to(at::kFloat).contiguous(),
                                   v.to(at::kFloat).contiguous(), bias, static_cast<float>(scale),
                                   o.block_q, o.block_k, into);
    if (into) return *into;
    return {o.out_fp32 ? st.out : st.out.to(q.scalar_type()), st.lse};
  }
  // Any device: the same algorithm from ATen ops, all heads at once.
  // (B, H, S, D) in fp32; the scale folded into q once.
  auto qf = q.permute({0, 2, 1, 3}).to(at::kFloat).mul(scale).contiguous();
  auto kt = k.permute({0, 2, 3, 1}).to(at::kFloat).contiguous();  // (B, H, D, Sk)
  auto vf = v.permute({0, 2, 1, 3}).to(at::kFloat).contiguous();

  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    // Autograd recording (training): whole rows at once and no in-place
    // updates, which the blocked loop below makes and autograd cannot replay.
    auto s = at::matmul(qf, kt);  // (B, H, Sq, Sk)
    if (kpm.defined()) s = s.masked_fill(kpm.logical_not(), neg_inf);
    if (am.defined()) s = s.masked_fill(am.logical_not(), neg_inf);
    auto lse = at::logsumexp(s, -1);  // -inf for a row with every key masked
    auto p = at::exp(s - at::where(at::isinf(lse), at::zeros_like(lse), lse).unsqueeze(-1));
    auto result = at::matmul(p, vf).permute({0, 2, 1, 3});
    return {o.out_fp32 ? result.contiguous() : result.to(q.scalar_type()).contiguous(), lse};
  }
  auto out = at::empty({B, H, Sq, D}, f32);
  auto lse = at::empty({B, H, Sq}, f32);
  for (int64_t qs = 0; qs < Sq; qs += o.block_q) {
    const int64_t bq = std::min(o.block_q, Sq - qs);
    auto qb = qf.narrow(2, qs, bq);
    auto m = at::full({B, H, bq, 1}, neg_inf, f32);
    auto l = at::zeros({B, H, bq, 1}, f32);
    auto acc = at::zeros({B, H, bq, D}, f32);
    for (int64_t ks = 0; ks < Sk; ks += o.block_k) {
      const int64_t bk = std::min(o.block_k, Sk - ks);
      auto s = at::matmul(qb, kt.narrow(3, ks, bk));  // (B, H, bq, bk)
      if (kpm.defined()) s.masked_fill_(kpm.narrow(3, ks, bk).logical_not(), neg_inf);
      if (am.defined()) {
        auto blk = am.size(2) == 1 ? am : am.narrow(2, qs, bq);
        blk = blk.size(3) == 1 ? blk : blk.narrow(3, ks, bk);
        s.masked_fill_(blk.logical_not(), neg_inf);
      }
      auto m_new = at::maximum(m, std::get<0>(s.max(-1, /*keepdim=*/true)));
      // Rows with every key masked so far keep m = -inf; shift them by 0 so
      // exp() gives 0 instead of NaN.
      auto m_safe = at::where(at::isinf(m_new), at::zeros_like(m_new), m_new);
      s.sub_(m_safe).exp_();
      auto alpha = (m - m_safe).exp_();
      l.mul_(alpha).add_(s.sum(-1, /*keepdim=*/true));
      acc.mul_(alpha).add_(at::matmul(s, vf.narrow(2, ks, bk)));
      m = m_new;
    }
    auto empty = l.eq(0);
    out.narrow(2, qs, bq).copy_(acc.div(at::where(empty, at::ones_like(l), l)));
    lse.narrow(2, qs, bq).copy_(
        at::where(empty, at::full_like(m, neg_inf), m + l.log()).squeeze(-1));
  }
  auto result = out.permute({0, 2, 1, 3});
  return {o.out_fp32 ? result.contiguous() : result.to(q.scalar_type()).contiguous(), lse};
}

}  // namespace

AttentionState local_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const LocalAttentionOptions& o) {
  return attend(q, k, v, o, nullptr);
}

void local_attention_(AttentionState& acc, const at::Tensor& q, const at::Tensor& k,
                      const at::Tensor& v, const LocalAttentionOptions& o) {
  attend(q, k, v, o, &acc);
}

std::string local_attention_cpu_kernel() {
  return detail::cpu_kernel_name(detail::selected_cpu_kernel());
}

LocalAttentionCpuPlan local_attention_cpu_plan(int64_t head_dim, at::ScalarType dtype) {
  LocalAttentionCpuPlan p;
  const auto& caches = detail::cache_sizes();
  p.l1d_bytes = caches.l1d;
  p.l2_bytes = caches.l2;
  p.cache_source = caches.source;
  if (dtype == at::kBFloat16 && detail::bf16_kernel_runs(head_dim) &&
      detail::bf16_kernel_selected()) {
    p.kernel = "avx512_bf16";
    p.key_block = detail::key_block(head_dim, sizeof(uint16_t), detail::kScoreBlock);
    return p;
  }
  const auto kernel = detail::selected_cpu_kernel();
  p.kernel = detail::cpu_kernel_name(kernel);
  if (detail::register_tiled(kernel, head_dim)) {
    p.key_block = detail::key_block(head_dim, sizeof(float), detail::kScoreBlock);
  } else {
    p.kernel = "blas";
  }
  return p;
}

void merge_attention_(AttentionState& acc, const AttentionState& b) {
  const auto dtype = acc.out.scalar_type();
  auto lse_a = acc.lse.to(at::kFloat), lse_b = b.lse.to(at::kFloat);
  // sigmoid gives exactly 1 where a is empty (-inf) and 0 where b is; where
  // both are, -inf - -inf is NaN and the weight becomes 0 (out stays zero).
  auto w = at::sigmoid(lse_b - lse_a);
  // In place only when autograd is not recording: the backward of sigmoid
  // and of lerp needs the tensors an in-place op would overwrite.
  const bool recording = at::GradMode::is_enabled() &&
                         (w.requires_grad() || acc.out.requires_grad() || b.out.requires_grad());
  w = recording ? w.nan_to_num(0.0) : w.nan_to_num_(0.0);
  // (B, H, S) -> (B, S, H, 1) to weight the (B, S, H, D) outputs. lerp_ takes
  // out_b exactly at w = 1 and keeps out_a exactly at w = 0.
  const auto weight = w.permute({0, 2, 1}).unsqueeze(-1).to(dtype);
  if (recording) {
    acc.out = at::lerp(acc.out, b.out.to(dtype), weight);
  } else {
    acc.out.lerp_(b.out.to(dtype), weight);
  }
  acc.lse = at::logaddexp(lse_a, lse_b).to(acc.lse.scalar_type());
}

AttentionState merge_attention(const AttentionState& a, const AttentionState& b) {
  AttentionState acc{a.out.clone(), a.lse};
  merge_attention_(acc, b);
  return acc;
}

}  // namespace spdit
