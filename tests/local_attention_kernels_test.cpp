// Every CPU kernel of local attention (BLAS blocks, AVX2 and AVX-512
// register tiles) against a double-precision reference, on shapes that cross
// every edge of the tiled kernel: row groups of 6, key tiles of 16/64, score
// blocks of 512 keys, head dims with a tail of vectors, masked keys, and a
// continuation in place. Kernels this CPU cannot run are reported and skipped.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "attention/bf16_kernel.h"
#include "attention/cache_blocking.h"
#include "attention/register_tiled_kernel.h"
#include "spdit/attention/local_attention.h"
#include "support/env_scope.h"

using namespace spdit;

namespace {

using spdit::test::EnvScope;

// SPDIT_CPU_KERNEL for one scope.
class KernelChoice : public EnvScope {
 public:
  explicit KernelChoice(const char* name) : EnvScope("SPDIT_CPU_KERNEL", name) {}
};

bool runnable(const char* name) {
  KernelChoice choice(name);
  try {
    spdit::detail::selected_cpu_kernel();
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

struct Shape {
  int64_t sq, sk, d;
  bool masked;
};

// softmax(q k^T / sqrt(d) + mask) v and its LSE, in double, (B, S, H, D).
AttentionState reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& keep) {
  auto s =
      at::matmul(q.permute({0, 2, 1, 3}).to(at::kDouble), k.permute({0, 2, 3, 1}).to(at::kDouble)) /
      std::sqrt(static_cast<double>(q.size(3)));
  if (keep.defined())
    s = s.masked_fill(keep.logical_not().view({keep.size(0), 1, 1, -1}), -INFINITY);
  auto lse = at::logsumexp(s, -1);
  auto p = at::exp(s - lse.unsqueeze(-1)).nan_to_num(0.0);  // all-masked rows: 0
  auto out = at::matmul(p, v.permute({0, 2, 1, 3}).to(at::kDouble)).permute({0, 2, 1, 3});
  return {out.to(at::kFloat), lse.to(at::kFloat)};
}

const char* const kKernels[] = {"blas", "avx2", "avx512"};

}  // namespace

TEST(LocalAttentionKernels, EveryKernelMatchesTheReference) {
  const Shape shapes[] = {
      {1, 1, 16, false},  {7, 13, 16, false},  {6, 64, 64, true},      {13, 65, 48, false},
      {5, 129, 80, true}, {12, 600, 64, true}, {37, 1100, 128, false}, {600, 530, 64, false},
      {9, 40, 24, true},  // a multiple of AVX2's 8 lanes, not AVX-512's 16: BLAS there
  };
  int ran = 0;
  for (const char* name : kKernels) {
    if (!runnable(name)) {
      std::cout << "[ SKIPPED  ] kernel " << name << ": this CPU cannot run it\n";
      continue;
    }
    KernelChoice choice(name);
    ++ran;
    for (const auto& sh : shapes) {
      SCOPED_TRACE(std::string(name) + " sq=" + std::to_string(sh.sq) +
                   " sk=" + std::to_string(sh.sk) + " d=" + std::to_string(sh.d) +
                   (sh.masked ? " masked" : ""));
      auto q = at::randn({2, sh.sq, 3, sh.d}), k = at::randn({2, sh.sk, 3, sh.d}),
           v = at::randn({2, sh.sk, 3, sh.d});
      LocalAttentionOptions o;
      o.out_fp32 = true;
      at::Tensor keep;
      if (sh.masked) {
        keep = at::rand({2, sh.sk}) > 0.4;
        keep[1].fill_(false);  // batch 1: every key masked
        o.key_padding_mask = keep;
      }
      auto got = local_attention(q, k, v, o);
      auto want = reference(q, k, v, keep);
      EXPECT_LE((got.out - want.out).abs().max().item<double>(), 2e-5);
      auto finite = at::isfinite(want.lse);
      EXPECT_TRUE(at::equal(at::isfinite(got.lse), finite))
          << "rows with no valid key have LSE -inf";
      EXPECT_LE(
          (got.lse - want.lse).masked_fill(finite.logical_not(), 0).abs().max().item<double>(),
          2e-5);
    }
  }
  EXPECT_GE(ran, 1);
}

TEST(LocalAttentionKernels, EveryKernelContinuesInPlace) {
  // Three key blocks, the first masking some rows' keys entirely (those rows
  // start empty: LSE -inf) and the last masking others: the continued state
  // must equal one call over all keys, in the fused kernel's fp32 path and in
  // the compute-and-merge path of a bf16 accumulator.
  for (const char* name : kKernels) {
    if (!runnable(name)) continue;
    KernelChoice choice(name);
    SCOPED_TRACE(name);
    auto q = at::randn({2, 37, 3, 16}), k = at::randn({2, 50, 3, 16}),
         v = at::randn({2, 50, 3, 16});
    auto mask = at::rand({2, 50}) > 0.3;
    mask.narrow(1, 0, 20).fill_(false);
    mask[1].narrow(0, 20, 20).fill_(false);
    LocalAttentionOptions all;
    all.key_padding_mask = mask;
    all.out_fp32 = true;
    auto whole = local_attention(q, k, v, all);
    auto part = [&](int64_t from, int64_t n) {
      LocalAttentionOptions o;
      o.key_padding_mask = mask.narrow(1, from, n);
      o.block_q = 16, o.block_k = 7;
      o.out_fp32 = true;
      return o;
    };
    auto acc = local_attention(q, k.narrow(1, 0, 20), v.narrow(1, 0, 20), part(0, 20));
    ASSERT_TRUE(at::isinf(acc.lse).all().item<bool>());
    const auto* storage = acc.out.data_ptr();
    local_attention_(acc, q, k.narrow(1, 20, 20), v.narrow(1, 20, 20), part(20, 20));
    local_attention_(acc, q, k.narrow(1, 40, 10), v.narrow(1, 40, 10), part(40, 10));
    EXPECT_EQ(acc.out.data_ptr(), storage) << "the fp32 accumulator is continued in place";
    EXPECT_LE((acc.out - whole.out).abs().max().item<double>(), 1e-5);
    EXPECT_LE((acc.lse - whole.lse).abs().max().item<double>(), 1e-5);
    // Row 1's second block is fully masked: the rows with no valid key anywhere
    // stay 0 / -inf, exactly as in the single call.
    EXPECT_TRUE((at::isinf(acc.lse) == at::isinf(whole.lse)).all().item<bool>());

    AttentionState low{local_attention(q, k.narrow(1, 0, 25), v.narrow(1, 0, 25), part(0, 25))
                           .out.to(at::kBFloat16),
                       local_attention(q, k.narrow(1, 0, 25), v.narrow(1, 0, 25), part(0, 25)).lse};
    local_attention_(low, q, k.narrow(1, 25, 25), v.narrow(1, 25, 25), part(25, 25));
    EXPECT_EQ(low.out.scalar_type(), at::kBFloat16);
    EXPECT_LE((low.out.to(at::kFloat) - whole.out).abs().max().item<double>(), 2e-2);
  }
}

TEST(LocalAttentionKernels, KeyBlocksFitHalfOfL2AndCanBeSetForAComparison) {
  std::optional<EnvScope> unset(std::in_place, "SPDIT_ATTENTION_KEY_BLOCK",
                                "");  // empty: the machine's rule
  const auto& caches = spdit::detail::cache_sizes();
  EXPECT_GT(caches.l1d, 0) << caches.source;
  EXPECT_GT(caches.l2, 0) << caches.source;
  for (int64_t d : {16, 64, 128, 256}) {
    for (int64_t bytes : {2, 4}) {
      const int64_t keys = spdit::detail::key_block(d, bytes, 512);
      EXPECT_EQ(keys % 512, 0);
      EXPECT_GE(keys, 512);
      // Packed K and V of a block take at most half of L2, unless one score
      // block alone is more.
      if (keys > 512)
        EXPECT_LE(2 * keys * d * bytes, caches.l2 / 2) << "d=" << d << " bytes=" << bytes;
      EXPECT_GT(2 * (keys + 512) * d * bytes, caches.l2 / 2) << "the largest such block";
    }
  }
  unset.reset();
  EnvScope forced("SPDIT_ATTENTION_KEY_BLOCK", "600");
  EXPECT_EQ(spdit::detail::key_block(64, 4, 512), 1024) << "rounded up to whole score blocks";
}

TEST(LocalAttentionKernels, EveryKernelMatchesTheReferenceAcrossKeyBlocks) {
  // Key blocks of 512 whatever this machine's L2: three blocks, the last
  // partial, with masked keys, so every row's softmax state crosses blocks.
  EnvScope small("SPDIT_ATTENTION_KEY_BLOCK", "512");
  for (const char* name : kKernels) {
    if (!runnable(name)) continue;
    KernelChoice choice(name);
    for (int64_t d : {64, 128}) {
      SCOPED_TRACE(std::string(name) + " d=" + std::to_string(d));
      auto q = at::randn({1, 37, 2, d}), k = at::randn({1, 1300, 2, d}),
           v = at::randn({1, 1300, 2, d});
      auto keep = at::rand({1, 1300}) > 0.3;
      LocalAttentionOptions o;
      o.out_fp32 = true;
      o.key_padding_mask = keep;
      auto got = local_attention(q, k, v, o);
      auto want = reference(q, k, v, keep);
      EXPECT_LE((got.out - want.out).abs().max().item<double>(), 2e-5);
      EXPECT_LE((got.lse - want.lse).abs().max().item<double>(), 2e-5);
    }
  }
}

TEST(LocalAttentionKernels, ChoosesARegisterTiledKernelWhereTheCpuHasOne) {
  KernelChoice none("");  // empty: the CPU's own choice
  const auto chosen = spdit::detail::selected_cpu_kernel();
  if (runnable("avx512")) {
    EXPECT_EQ(chosen, spdit::detail::CpuKernel::kAvx512);
  } else if (runnable("avx2")) {
    EXPECT_EQ(chosen, spdit::detail::CpuKernel::kAvx2);
  } else {
    EXPECT_EQ(chosen, spdit::detail::CpuKernel::kBlas);
  }
  EXPECT_TRUE(spdit::detail::register_tiled(spdit::detail::CpuKernel::kAvx512, 64));
  EXPECT_FALSE(spdit::detail::register_tiled(spdit::detail::CpuKernel::kAvx512, 24));
  EXPECT_TRUE(spdit::detail::register_tiled(spdit::detail::CpuKernel::kAvx2, 24));
  EXPECT_FALSE(spdit::detail::register_tiled(spdit::detail::CpuKernel::kBlas, 64));
}

TEST(LocalAttentionKernels, AnUnknownKernelNameIsAnError) {
  KernelChoice choice("avx1024");
  auto q = at::randn({1, 4, 1, 16});
  try {
    local_attention(q, q, q);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("none of blas, avx2, avx512"), std::string::npos)
        << e.what();
  }
}

// ---- bf16 ------------------------------------------------------------------
//
// The bf16 kernel's parity with the fp32 kernel, on the same bf16 inputs:
// its scores are the fp32 kernel's up to summation order (a product of two
// bf16 is exact in fp32); the one extra rounding is of the probabilities to
// bf16 for P V, a relative error of at most 2^-9 per weight. The output, a
// convex combination of V's rows, then moves by at most 2^-9 * max|v|, and
// by far less on average (the errors are independent and partly cancel).
// The stated tolerance, in fp32 output (out_fp32):
//   max |out_bf16 - out_fp32| <= 2^-9 * max|v|   (2e-3 for |v| <= 1)
//   max |lse_bf16 - lse_fp32| <= 1e-6 * max(1, |lse|)
// (measured on these shapes: up to 0.47 of the output bound, 0.15 of the LSE's).
// With the output in bf16 (the default for bf16 inputs), add one rounding of
// the output to bf16: 2^-9 * max|out|.
namespace {

struct Bf16Shape {
  int64_t sq, sk, d;
  bool masked;
};

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

TEST(LocalAttentionKernels, Bf16KernelKeepsParityWithTheFp32Kernel) {
  if (!spdit::detail::cpu_has_avx512_bf16()) {
    GTEST_SKIP()
        << "this CPU has no AVX512-BF16 (cpuid): bf16 inputs are converted to fp32 here, which "
           "Bf16InputsWithoutTheKernelRunTheFp32Kernel covers";
  }
  // The kernel itself, also where converting is the default (Intel).
  EnvScope kernel("SPDIT_CPU_BF16_KERNEL", "avx512_bf16");
  const Bf16Shape shapes[] = {
      {1, 1, 16, false},    {7, 13, 16, false},  {6, 64, 64, true},      {13, 65, 48, false},
      {5, 129, 80, true},   {12, 600, 64, true}, {37, 1100, 128, false}, {600, 531, 64, false},
      {40, 2600, 64, true},  // crosses an L2 key block (2048 keys for d = 64 in bf16 on a 1 MB L2)
  };
  for (const auto& sh : shapes) {
    SCOPED_TRACE("sq=" + std::to_string(sh.sq) + " sk=" + std::to_string(sh.sk) +
                 " d=" + std::to_string(sh.d) + (sh.masked ? " masked" : ""));
    const auto bf = at::TensorOptions().dtype(at::kBFloat16);
    auto q = at::randn({2, sh.sq, 3, sh.d}, bf), k = at::randn({2, sh.sk, 3, sh.d}, bf);
    auto v = at::rand({2, sh.sk, 3, sh.d}, bf).mul_(2).sub_(1);  // |v| <= 1
    LocalAttentionOptions o;
    o.out_fp32 = true;
    if (sh.masked) {
      auto keep = at::rand({2, sh.sk}) > 0.4;
      keep[1].fill_(false);  // batch 1: every key masked
      o.key_padding_mask = keep;
    }
    AttentionState fp32;
    {
      EnvScope convert("SPDIT_CPU_BF16_KERNEL", "convert");
      fp32 = local_attention(q, k, v, o);
    }
    auto got = local_attention(q, k, v, o);
    const double vmax = max_abs(v.to(at::kFloat));
    EXPECT_LE(max_abs(got.out - fp32.out), std::ldexp(1.0, -9) * vmax);
    auto finite = at::isfinite(fp32.lse);
    EXPECT_TRUE(at::equal(at::isfinite(got.lse), finite)) << "rows with no valid key have LSE -inf";
    auto lse_err = (got.lse - fp32.lse).masked_fill(finite.logical_not(), 0).abs();
    auto lse_scale = fp32.lse.masked_fill(finite.logical_not(), 0).abs().clamp_min(1);
    EXPECT_LE((lse_err / lse_scale).max().item<double>(), 1e-6);

    o.out_fp32 = false;
    auto low = local_attention(q, k, v, o);
    EXPECT_EQ(low.out.scalar_type(), at::kBFloat16) << "the output takes q's dtype";
    EXPECT_LE(max_abs(low.out.to(at::kFloat) - fp32.out),
              std::ldexp(1.0, -9) * vmax + std::ldexp(1.0, -9) * max_abs(fp32.out));
  }
}

TEST(LocalAttentionKernels, Bf16KernelContinuesAnFp32AccumulatorInPlace) {
  if (!spdit::detail::cpu_has_avx512_bf16()) {
    GTEST_SKIP() << "this CPU has no AVX512-BF16 (cpuid)";
  }
  EnvScope kernel("SPDIT_CPU_BF16_KERNEL", "avx512_bf16");
  // Ring attention's steps with bf16 keys: two blocks, the first masking some
  // rows' keys entirely, continued in the fp32 accumulator they started.
  const auto bf = at::TensorOptions().dtype(at::kBFloat16);
  auto q = at::randn({2, 37, 3, 32}, bf), k = at::randn({2, 700, 3, 32}, bf);
  auto v = at::rand({2, 700, 3, 32}, bf).mul_(2).sub_(1);
  auto mask = at::rand({2, 700}) > 0.3;
  mask[1].narrow(0, 0, 300).fill_(false);
  LocalAttentionOptions all;
  all.key_padding_mask = mask;
  all.out_fp32 = true;
  auto whole = local_attention(q, k, v, all);
  auto part = [&](int64_t from, int64_t n) {
    LocalAttentionOptions o = all;
    o.key_padding_mask = mask.narrow(1, from, n);
    return o;
  };
  auto acc = local_attention(q, k.narrow(1, 0, 300), v.narrow(1, 0, 300), part(0, 300));
  const auto* storage = acc.out.data_ptr();
  local_attention_(acc, q, k.narrow(1, 300, 400), v.narrow(1, 300, 400), part(300, 400));
  EXPECT_EQ(acc.out.data_ptr(), storage) << "the fp32 accumulator is continued in place";
  // Both sides round probabilities to bf16, against different running maxima.
  EXPECT_LE(max_abs(acc.out - whole.out), 2 * std::ldexp(1.0, -9));
  EXPECT_LE(max_abs(acc.lse - whole.lse), 1e-6 * max_abs(whole.lse));
}

TEST(LocalAttentionKernels, Bf16InputsWithoutTheKernelRunTheFp32Kernel) {
  // Converted to fp32 (SPDIT_CPU_BF16_KERNEL=convert, and every CPU without
  // AVX512-BF16): the fp32 kernel's accuracy on the bf16 values, then one
  // rounding of the output to bf16.
  EnvScope convert("SPDIT_CPU_BF16_KERNEL", "convert");
  EXPECT_FALSE(spdit::detail::bf16_kernel_selected());
  const auto bf = at::TensorOptions().dtype(at::kBFloat16);
  auto q = at::randn({1, 70, 2, 64}, bf), k = at::randn({1, 90, 2, 64}, bf),
       v = at::randn({1, 90, 2, 64}, bf);
  auto got = local_attention(q, k, v);
  EXPECT_EQ(got.out.scalar_type(), at::kBFloat16);
  auto want = reference(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), {});
  EXPECT_LE(max_abs(got.out.to(at::kFloat) - want.out),
            std::ldexp(1.0, -8) * max_abs(want.out) + 2e-5);
  EXPECT_LE(max_abs(got.lse - want.lse), 2e-5 * max_abs(want.lse) + 2e-5);
}

TEST(LocalAttentionKernels, Bf16KernelChoiceFollowsTheCpuAndTheEnvironment) {
  {
    EnvScope none("SPDIT_CPU_BF16_KERNEL", "");
    EXPECT_EQ(spdit::detail::bf16_kernel_selected(), spdit::detail::bf16_kernel_faster_here());
    // Faster only where the CPU has the instructions at all.
    if (!spdit::detail::cpu_has_avx512_bf16())
      EXPECT_FALSE(spdit::detail::bf16_kernel_faster_here());
  }
  {
    EnvScope want("SPDIT_CPU_BF16_KERNEL", "avx512_bf16");
    if (spdit::detail::cpu_has_avx512_bf16()) {
      EXPECT_TRUE(spdit::detail::bf16_kernel_selected());
    } else {
      EXPECT_THROW(spdit::detail::bf16_kernel_selected(), std::invalid_argument);
    }
  }
  EnvScope unknown("SPDIT_CPU_BF16_KERNEL", "amx");
  EXPECT_THROW(spdit::detail::bf16_kernel_selected(), std::invalid_argument);
}

TEST(LocalAttentionKernels, Bf16PackingIsThePairInterleavedLayoutOfTheDotProduct) {
  // Runs everywhere: the layouts bf16_kernel.h documents, element by element,
  // with an odd key count (zero partner) and a head dim with a narrow panel.
  const int64_t sk = 67, d = 80, ld = 96;  // rows wider than d, as in (B, S, H, D)
  std::vector<uint16_t> k(sk * ld), v(sk * ld);
  for (size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<uint16_t>(i + 1), v[i] = static_cast<uint16_t>(7 * i + 3);
  std::vector<uint16_t> kt(spdit::detail::packed_keys_bf16_size(sk, d), 0xffff);
  std::vector<uint16_t> vp(spdit::detail::packed_values_bf16_size(sk, d), 0xffff);
  spdit::detail::pack_keys_bf16(k.data(), ld, sk, d, kt.data());
  spdit::detail::pack_values_bf16(v.data(), ld, sk, d, vp.data());
  ASSERT_EQ(kt.size(), 128u * d);  // two panels of 64 keys
  ASSERT_EQ(vp.size(), 68u * d);   // 34 key pairs
  for (int64_t j = 0; j < 128; ++j) {
    for (int64_t c = 0; c < d; ++c) {
      const uint16_t want = j < sk ? k[j * ld + c] : 0;
      ASSERT_EQ(kt[j / 64 * 64 * d + c / 2 * 128 + j % 64 * 2 + c % 2], want)
          << "key " << j << " dim " << c;
    }
  }
  for (int64_t j = 0; j < 68; ++j) {
    for (int64_t c = 0; c < d; ++c) {
      const int64_t c0 = c / 64 * 64, w = std::min<int64_t>(64, d - c0);
      const uint16_t want = j < sk ? v[j * ld + c] : 0;
      ASSERT_EQ(vp[c0 * 68 + j / 2 * 2 * w + (c - c0) * 2 + j % 2], want)
          << "key " << j << " dim " << c;
    }
  }
}
