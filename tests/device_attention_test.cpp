// Local attention on a CUDA device: LibTorch's fused kernels (flash,
// memory-efficient) and the ATen ops path against the CPU kernel on the same
// (dtype-rounded) inputs, with key padding masks, a batch with no key at all,
// and Ring's continuation over key chunks. Without a CUDA device (this
// machine's LibTorch 1.13 has none) the device tests are skipped, and what
// runs is the choice of path for CPU tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "spdit/attention/local_attention.h"
#include "support/env_scope.h"

using namespace spdit;
using spdit::test::EnvScope;

namespace {

#define SKIP_WITHOUT_CUDA()                                                                \
  if (!at::hasCUDA())                                                                      \
  GTEST_SKIP() << "no CUDA device: this LibTorch has no CUDA or this machine no GPU (see " \
                  "docs/cuda.md to build against a CUDA LibTorch)"

const char* name(at::ScalarType t) { return c10::toString(t); }

// |a - b| at its largest, over the largest |scale|.
double relative(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale) {
  return (a.cpu().to(at::kFloat) - b.cpu().to(at::kFloat)).abs().max().item<double>() /
         scale.abs().max().cpu().to(at::kFloat).item<double>();
}

// The tolerance for a dtype's kernels against fp32 on the same rounded inputs:
// bf16 and fp16 kernels round probabilities (and outputs) to their dtype.
double tolerance(at::ScalarType t) {
  return t == at::kBFloat16 ? 2e-2 : t == at::kHalf ? 4e-3 : 1e-4;
}

struct Inputs {
  at::Tensor q, k, v;  // on the device, in the dtype under test
};

Inputs make(at::ScalarType dt, int64_t b, int64_t sq, int64_t sk, int64_t h, int64_t d,
            uint64_t seed) {
  at::manual_seed(seed);
  auto on = at::TensorOptions().device(at::kCUDA).dtype(dt);
  return {at::randn({b, sq, h, d}).to(on), at::randn({b, sk, h, d}).to(on),
          at::randn({b, sk, h, d}).to(on)};
}

// The CPU kernel (tested against double elsewhere) on the same rounded values.
AttentionState on_cpu(const Inputs& in, const LocalAttentionOptions& o) {
  LocalAttentionOptions c = o;
  c.out_fp32 = true;
  if (c.key_padding_mask.defined()) c.key_padding_mask = c.key_padding_mask.cpu();
  return local_attention(in.q.cpu().to(at::kFloat), in.k.cpu().to(at::kFloat),
                         in.v.cpu().to(at::kFloat), c);
}

// Finite LSE entries agree within tol, and -inf stands exactly where it should.
void expect_lse_near(const at::Tensor& got, const at::Tensor& want, double tol,
                     const std::string& what) {
  auto g = got.cpu().to(at::kFloat), w = want.cpu().to(at::kFloat);
  ASSERT_EQ(g.sizes(), w.sizes()) << what;
  EXPECT_TRUE(at::equal(at::isinf(g), at::isinf(w))) << what << ": -inf rows differ";
  auto finite = at::isfinite(w);
  if (finite.any().item<bool>()) {
    EXPECT_LE((g.masked_select(finite) - w.masked_select(finite)).abs().max().item<double>(), tol)
        << what;
  }
}

}  // namespace

TEST(DeviceAttention, CpuTensorsTakeTheCpuKernelAndRecordingTakesAtenOps) {
  auto q = at::randn({1, 8, 2, 16}), k = at::randn({1, 8, 2, 16}), v = at::randn({1, 8, 2, 16});
  EXPECT_EQ(local_attention_path(q, k, v), LocalAttentionPath::kFusedCpu);
  EXPECT_EQ(local_attention_device_kernel(q, k, v), "cpu");
  // The device variable concerns devices only: CPU tensors ignore it.
  EnvScope forced("SPDIT_DEVICE_ATTENTION", "flash");
  EXPECT_EQ(local_attention_path(q, k, v), LocalAttentionPath::kFusedCpu);
  auto qg = q.clone().requires_grad_();
  EXPECT_EQ(local_attention_device_kernel(qg, k, v), "aten");
}

TEST(DeviceAttention, EachKernelMatchesTheCpuKernel) {
  SKIP_WITHOUT_CUDA();
  struct Shape {
    int64_t b, sq, sk, h, d;
  };
  // Even and odd lengths, fewer keys than queries, head dims 64, 128 and one
  // (40) the fused kernels take, plus 36, which only the ATen path takes.
  const Shape shapes[] = {
      {1, 256, 256, 4, 64}, {2, 77, 130, 3, 128}, {1, 1000, 333, 2, 40}, {1, 50, 70, 2, 36}};
  int compared = 0;
  for (auto dt : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (const auto& s : shapes) {
      const auto in = make(dt, s.b, s.sq, s.sk, s.h, s.d, 7 + s.sq);
      const auto want = on_cpu(in, {});
      for (const char* kernel : {"", "cudnn", "flash", "efficient", "aten"}) {
        EnvScope choice("SPDIT_DEVICE_ATTENTION", kernel);
        const bool fused_dims = s.d % 8 == 0;
        const bool flash_ok = dt != at::kFloat && fused_dims;
        const bool cudnn_ok = flash_ok && s.d <= 128;
        if ((std::string(kernel) == "cudnn" && !cudnn_ok) ||
            (std::string(kernel) == "flash" && !flash_ok) ||
            (std::string(kernel) == "efficient" && !fused_dims)) {
          EXPECT_THROW(local_attention(in.q, in.k, in.v), std::invalid_argument)
              << kernel << " " << name(dt) << " d=" << s.d;
          continue;
        }
        const std::string ran = local_attention_device_kernel(in.q, in.k, in.v);
        const std::string what = std::string(*kernel ? kernel : "auto") + " (" + ran + ") " +
                                 name(dt) + " S=" + std::to_string(s.sq) + "/" +
                                 std::to_string(s.sk) + " d=" + std::to_string(s.d);
        if (!*kernel) {
          EXPECT_EQ(ran, !fused_dims ? "aten"
                         : cudnn_ok  ? "cudnn"
                         : flash_ok  ? "flash"
                                     : "efficient")
              << what;
        }
        LocalAttentionOptions o;
        o.out_fp32 = true;
        const auto got = local_attention(in.q, in.k, in.v, o);
        ASSERT_EQ(got.out.sizes(), in.q.sizes()) << what;
        EXPECT_TRUE(got.out.is_cuda()) << what;
        EXPECT_LE(relative(got.out, want.out, in.v), tolerance(dt)) << what;
        expect_lse_near(got.lse, want.lse, 10 * tolerance(dt), what);
        // Without out_fp32 the output keeps the input's dtype.
        EXPECT_EQ(local_attention(in.q, in.k, in.v).out.scalar_type(), dt) << what;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 30);
}

TEST(DeviceAttention, KeyPaddingMasksAndABatchWithNoKeys) {
  SKIP_WITHOUT_CUDA();
  for (auto dt : {at::kBFloat16, at::kFloat}) {
    const auto in = make(dt, 3, 90, 75, 2, 64, 11);
    // Batch 0: a scattered half of the keys; 1: all; 2: none.
    auto keep = at::ones({3, 75}, at::kBool);
    keep[0].copy_(at::arange(75).remainder(3).ne(1));
    keep[2].fill_(false);
    LocalAttentionOptions o;
    o.key_padding_mask = keep.to(at::kCUDA);
    const auto want = on_cpu(in, o);
    for (const char* kernel : {"", "efficient", "aten"}) {
      EnvScope choice("SPDIT_DEVICE_ATTENTION", kernel);
      const std::string what = std::string(*kernel ? kernel : "auto") + " " + name(dt);
      if (!*kernel) EXPECT_EQ(local_attention_device_kernel(in.q, in.k, in.v, o), "efficient");
      o.out_fp32 = true;
      const auto got = local_attention(in.q, in.k, in.v, o);
      EXPECT_LE(relative(got.out, want.out, in.v), tolerance(dt)) << what;
      expect_lse_near(got.lse, want.lse, 10 * tolerance(dt), what);
      EXPECT_EQ(got.out[2].abs().max().item<float>(), 0.0f) << what << ": the keyless batch";
      EXPECT_TRUE(at::isinf(got.lse[2].cpu()).all().item<bool>()) << what;
      EXPECT_LT(got.lse[2].max().item<float>(), 0.0f) << what;
    }
    // A (1, Sk) mask is shared by every batch.
    LocalAttentionOptions shared;
    shared.key_padding_mask = keep[0].unsqueeze(0).to(at::kCUDA);
    shared.out_fp32 = true;
    EXPECT_LE(relative(local_attention(in.q, in.k, in.v, shared).out, on_cpu(in, shared).out, in.v),
              tolerance(dt))
        << name(dt);
  }
}

TEST(DeviceAttention, ContinuingOverKeyChunksEqualsOnePass) {
  // What each Ring step does: the attention over the keys seen so far,
  // continued with the next chunk (three uneven chunks, one fully masked).
  SKIP_WITHOUT_CUDA();
  for (auto dt : {at::kBFloat16, at::kFloat}) {
    const auto in = make(dt, 2, 100, 150, 3, 64, 5);
    auto keep = at::ones({2, 150}, at::kBool);
    keep.narrow(1, 64, 40).fill_(false);  // the middle chunk: keys 64..103
    LocalAttentionOptions o;
    o.key_padding_mask = keep.to(at::kCUDA);
    o.out_fp32 = true;
    const auto whole = local_attention(in.q, in.k, in.v, o);
    const int64_t cuts[] = {0, 64, 104, 150};
    auto part = [&](int i) {
      LocalAttentionOptions c = o;
      c.key_padding_mask = o.key_padding_mask.narrow(1, cuts[i], cuts[i + 1] - cuts[i]);
      return std::make_tuple(in.k.narrow(1, cuts[i], cuts[i + 1] - cuts[i]),
                             in.v.narrow(1, cuts[i], cuts[i + 1] - cuts[i]), c);
    };
    auto [k0, v0, c0] = part(0);
    auto acc = local_attention(in.q, k0, v0, c0);
    for (int i = 1; i < 3; ++i) {
      auto [ki, vi, ci] = part(i);
      local_attention_(acc, in.q, ki, vi, ci);
    }
    EXPECT_LE(relative(acc.out, whole.out, in.v), tolerance(dt)) << name(dt);
    expect_lse_near(acc.lse, whole.lse, 10 * tolerance(dt), name(dt));
  }
}

TEST(DeviceAttention, NamingAKernelThatCannotRunSaysWhy) {
  SKIP_WITHOUT_CUDA();
  const auto in = make(at::kFloat, 1, 16, 16, 2, 64, 3);
  auto message = [&](const char* kernel) -> std::string {
    EnvScope choice("SPDIT_DEVICE_ATTENTION", kernel);
    try {
      local_attention(in.q, in.k, in.v);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message("flash").find("flash takes bf16 or fp16 only"), std::string::npos)
      << message("flash");
  EXPECT_NE(message("cudnn").find("cudnn takes bf16 or fp16 only"), std::string::npos)
      << message("cudnn");
  EXPECT_NE(message("fast").find("none of cudnn, flash, efficient, aten"), std::string::npos)
      << message("fast");
}
