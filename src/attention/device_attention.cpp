#include "device_attention.h"

#include "../runtime/torch_compat.h"

#include <atomic>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

namespace spdit::detail {
namespace {

// The fused kernels take a softmax scale from 2.1 on; cuDNN's returns its
// LSE and takes a bias from 2.6 on.
constexpr bool kFusedKernelsBuilt = SPDIT_TORCH_AT_LEAST(2, 1);
constexpr bool kCudnnBuilt = SPDIT_TORCH_AT_LEAST(2, 6);

// cuDNN's attention depends on the GPU and the cuDNN release beside
// LibTorch; where it fails once, the automatic choice stops offering it
// (its error is kept for SPDIT_DEVICE_ATTENTION=cudnn to report).
std::atomic<bool> cudnn_failed{false};
std::mutex cudnn_error_mutex;
std::string cudnn_error;

[[maybe_unused]] bool forced() {
  const char* want = std::getenv("SPDIT_DEVICE_ATTENTION");
  return want && *want;
}

// Why `kernel` cannot take these inputs, or "" when it can.
std::string unsupported(DeviceKernel kernel, const at::Tensor& q, bool key_padding_mask) {
  if (kernel == DeviceKernel::kAten) return "";
  if (!kFusedKernelsBuilt) {
    return "this LibTorch (" + std::to_string(TORCH_VERSION_MAJOR) + "." +
           std::to_string(TORCH_VERSION_MINOR) + ") has no fused attention with a scale (2.1+)";
  }
  if (!q.is_cuda()) return "the tensors are not on a CUDA device";
  const int64_t d = q.size(3);
  if (d % 8 != 0 || d > 256) {
    return "head dim " + std::to_string(d) + " is not a multiple of 8 up to 256";
  }
  const auto dt = q.scalar_type();
  if (kernel == DeviceKernel::kCudnn) {
    if (!kCudnnBuilt) return "this LibTorch has no cuDNN attention that returns the LSE (2.6+)";
    if (dt != at::kBFloat16 && dt != at::kHalf) return "cudnn takes bf16 or fp16 only";
    if (key_padding_mask) return "cudnn is not given masks here";
    if (d > 128) return "cudnn takes head dims up to 128 here";
    if (cudnn_failed) {
      std::lock_guard<std::mutex> lock(cudnn_error_mutex);
      return "it failed on this machine: " + cudnn_error;
    }
  } else if (kernel == DeviceKernel::kFlash) {
    if (dt != at::kBFloat16 && dt != at::kHalf) return "flash takes bf16 or fp16 only";
    if (key_padding_mask) return "flash takes no mask";
  } else if (dt != at::kBFloat16 && dt != at::kHalf && dt != at::kFloat) {
    return "efficient takes bf16, fp16 or fp32 only";
  }
  return "";
}

}  // namespace

const char* device_kernel_name(DeviceKernel kernel) {
  switch (kernel) {
    case DeviceKernel::kCudnn:
      return "cudnn";
    case DeviceKernel::kFlash:
      return "flash";
    case DeviceKernel::kEfficient:
      return "efficient";
    case DeviceKernel::kAten:
      return "aten";
  }
  return "?";
}

DeviceKernel device_kernel(const at::Tensor& q, bool key_padding_mask) {
  // Read on every call, like SPDIT_CPU_KERNEL, so one process can compare.
  const char* want = std::getenv("SPDIT_DEVICE_ATTENTION");
  if (want && *want) {
    for (auto k : {DeviceKernel::kCudnn, DeviceKernel::kFlash, DeviceKernel::kEfficient,
                   DeviceKernel::kAten}) {
      if (std::string(want) != device_kernel_name(k)) continue;
      const auto why = unsupported(k, q, key_padding_mask);
      if (!why.empty()) {
        throw std::invalid_argument(std::string("spdit: SPDIT_DEVICE_ATTENTION=") + want +
                                    " cannot run this attention: " + why);
      }
      return k;
    }
    throw std::invalid_argument(std::string("spdit: SPDIT_DEVICE_ATTENTION=") + want +
                                " is none of cudnn, flash, efficient, aten (unset it to choose)");
  }
  for (auto k : {DeviceKernel::kCudnn, DeviceKernel::kFlash, DeviceKernel::kEfficient}) {
    if (unsupported(k, q, key_padding_mask).empty()) return k;
  }
  return DeviceKernel::kAten;
}

AttentionState device_attention(DeviceKernel kernel, const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& v, const at::Tensor& key_padding_mask,
                                double scale) {
  const auto why = unsupported(kernel, q, key_padding_mask.defined());
  if (kernel == DeviceKernel::kAten || !why.empty()) {
    throw std::logic_error(std::string("spdit: device attention called with ") +
                           device_kernel_name(kernel) + (why.empty() ? "" : ": " + why));
  }
#if SPDIT_TORCH_AT_LEAST(2, 1)
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), Sk = k.size(1);
  // The kernels take (B, H, S, D) with the last dim contiguous: our
  // (B, S, H, D) transposed is that, without a copy.
  auto qt = q.contiguous().transpose(1, 2), kt = k.contiguous().transpose(1, 2),
       vt = v.contiguous().transpose(1, 2);
  const auto keep = key_padding_mask.defined() ? key_padding_mask.to(q.device()) : at::Tensor();
  at::Tensor out, lse;
  if (kernel == DeviceKernel::kCudnn) {
#if SPDIT_TORCH_AT_LEAST(2, 6)
    try {
      auto r = at::_scaled_dot_product_cudnn_attention(qt, kt, vt, /*attn_bias=*/c10::nullopt,
                                                       /*compute_log_sumexp=*/true,
                                                       /*dropout_p=*/0.0, /*is_causal=*/false,
                                                       /*return_debug_mask=*/false, scale);
      out = std::get<0>(r);
      lse = std::get<1>(r).reshape({B, H, Sq});  // cuDNN's statistics are (B, H, Sq, 1)
    } catch (const c10::OutOfMemoryError&) {
      throw;  // the GPU's memory, not cuDNN's support: flash would not fit either
    } catch (const c10::Error& e) {
      if (forced()) throw;
      {
        std::lock_guard<std::mutex> lock(cudnn_error_mutex);
        cudnn_error = e.what_without_backtrace();
      }
      cudnn_failed = true;
      return device_attention(DeviceKernel::kFlash, q, k, v, key_padding_mask, scale);
    }
#endif
  } else if (kernel == DeviceKernel::kFlash) {
    auto r = at::_scaled_dot_product_flash_attention(qt, kt, vt, /*dropout_p=*/0.0,
                                                     /*is_causal=*/false,
                                                     /*return_debug_mask=*/false, scale);
    out = std::get<0>(r);
    lse = std::get<1>(r);
  } else {
    c10::optional<at::Tensor> bias;
    if (keep.defined()) {
      // An additive bias (0 or -inf) in q's dtype, its rows padded to a
      // multiple of 16 elements as the kernel's loads need (what LibTorch's
      // own scaled_dot_product_attention does), broadcast over heads and
      // queries without being materialised.
      const int64_t rows = keep.size(0), padded = (Sk + 15) / 16 * 16;
      auto full = at::zeros({rows, 1, 1, padded}, q.options());
      auto b = full.narrow(3, 0, Sk);
      b.masked_fill_(keep.view({rows, 1, 1, Sk}).logical_not(),
                     -std::numeric_limits<double>::infinity());
      bias = b.expand({B, H, Sq, Sk});
    }
    auto r = at::_scaled_dot_product_efficient_attention(qt, kt, vt, bias,
                                                         /*compute_log_sumexp=*/true,
                                                         /*dropout_p=*/0.0,
                                                         /*is_causal=*/false, scale);
    out = std::get<0>(r);
    // Its LSE rows are padded to a multiple of 32 queries.
    lse = std::get<1>(r).narrow(2, 0, Sq);
  }
  out = out.transpose(1, 2).contiguous();  // (B, Sq, H, D); free when already so
  lse = lse.to(at::kFloat).contiguous();
  if (keep.defined()) {
    // A batch with no key to attend to: by our convention out 0, LSE -inf
    // (the kernels' own answer there is not specified). No host sync.
    auto none = keep.any(1).logical_not().expand({B});
    out.masked_fill_(none.reshape({B, 1, 1, 1}), 0);
    lse.masked_fill_(none.reshape({B, 1, 1}), -std::numeric_limits<double>::infinity());
  }
  return {out, lse};
#else
  (void)k, (void)v, (void)scale;
  return {};
#endif
}

}  // namespace spdit::detail
