#pragma once
// Local attention on a GPU through LibTorch's own fused kernels, which also
// return the log-sum-exp that Ring attention's merge needs: cuDNN's (bf16 and
// fp16, no mask, LibTorch 2.6+), FlashAttention-2 (bf16 and fp16, no mask)
// and the memory-efficient kernel (fp32 too, and a key padding mask as an
// additive bias). Flash and efficient exist from LibTorch 2.1 on; against an
// older LibTorch (Debian's 1.13) every device takes the ATen ops path.
#include "spdit/attention/local_attention.h"

#include <string>

namespace spdit::detail {

enum class DeviceKernel { kCudnn, kFlash, kEfficient, kAten };

const char* device_kernel_name(DeviceKernel kernel);

/// The kernel for these inputs on a CUDA device: the environment variable
/// SPDIT_DEVICE_ATTENTION (cudnn, flash, efficient or aten) when set, else
/// the first that applies of cudnn, flash, efficient, aten (head dims that
/// are not a multiple of 8 or above 256, or a LibTorch without the fused
/// kernels). Naming a kernel that cannot take the inputs is an error that
/// says why. Where cuDNN's kernel fails once (an older GPU or cuDNN), the
/// automatic choice moves on to flash for the rest of the process.
DeviceKernel device_kernel(const at::Tensor& q, bool key_padding_mask);

/// Runs `kernel` (cudnn, flash or efficient): out (B, Sq, H, D) in q's dtype, LSE
/// (B, H, Sq) fp32. key_padding_mask is bool (B, Sk) or (1, Sk), or
/// undefined; a batch whose keys are all masked gets out 0 and LSE -inf.
AttentionState device_attention(DeviceKernel kernel, const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& v, const at::Tensor& key_padding_mask,
                                double scale);

}  // namespace spdit::detail
