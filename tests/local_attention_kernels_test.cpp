// Every CPU kernel of local attention (BLAS blocks, AVX2 and AVX-512
// register tiles) against a double-precision reference, on shapes that cross
// every edge of the tiled kernel: row groups of 6, key tiles of 16/64, score
// blocks of 512 keys, head dims with a tail of vectors, masked keys, and a
// continuation in place. Kernels this CPU cannot run are reported and skipped.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "attention/register_tiled_kernel.h"
#include "spdit/attention/local_attention.h"

using namespace spdit;

namespace {

// Sets SPDIT_CPU_KERNEL for one scope (empty: unset); the kernel is chosen
// on every call.
class KernelChoice {
 public:
  explicit KernelChoice(const char* name) {
    if (const char* old = std::getenv("SPDIT_CPU_KERNEL")) saved_ = old, had_ = true;
    setenv("SPDIT_CPU_KERNEL", name, 1);
  }
  ~KernelChoice() { had_ ? setenv("SPDIT_CPU_KERNEL", saved_.c_str(), 1) : unsetenv("SPDIT_CPU_KERNEL"); }

 private:
  std::string saved_;
  bool had_ = false;
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
AttentionState reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& keep) {
  auto s = at::matmul(q.permute({0, 2, 1, 3}).to(at::kDouble), k.permute({0, 2, 3, 1}).to(at::kDouble)) /
           std::sqrt(static_cast<double>(q.size(3)));
  if (keep.defined()) s = s.masked_fill(keep.logical_not().view({keep.size(0), 1, 1, -1}), -INFINITY);
  auto lse = at::logsumexp(s, -1);
  auto p = at::exp(s - lse.unsqueeze(-1)).nan_to_num(0.0);  // all-masked rows: 0
  auto out = at::matmul(p, v.permute({0, 2, 1, 3}).to(at::kDouble)).permute({0, 2, 1, 3});
  return {out.to(at::kFloat), lse.to(at::kFloat)};
}

const char* const kKernels[] = {"blas", "avx2", "avx512"};

}  // namespace

TEST(LocalAttentionKernels, EveryKernelMatchesTheReference) {
  const Shape shapes[] = {
      {1, 1, 16, false},   {7, 13, 16, false},  {6, 64, 64, true},    {13, 65, 48, false},
      {5, 129, 80, true},  {12, 600, 64, true}, {37, 1100, 128, false}, {600, 530, 64, false},
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
      SCOPED_TRACE(std::string(name) + " sq=" + std::to_string(sh.sq) + " sk=" + std::to_string(sh.sk) +
                   " d=" + std::to_string(sh.d) + (sh.masked ? " masked" : ""));
      auto q = at::randn({2, sh.sq, 3, sh.d}), k = at::randn({2, sh.sk, 3, sh.d}), v = at::randn({2, sh.sk, 3, sh.d});
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
      EXPECT_TRUE(at::equal(at::isfinite(got.lse), finite)) << "rows with no valid key have LSE -inf";
      EXPECT_LE((got.lse - want.lse).masked_fill(finite.logical_not(), 0).abs().max().item<double>(), 2e-5);
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
    auto q = at::randn({2, 37, 3, 16}), k = at::randn({2, 50, 3, 16}), v = at::randn({2, 50, 3, 16});
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

    AttentionState low{local_attention(q, k.narrow(1, 0, 25), v.narrow(1, 0, 25), part(0, 25)).out.to(at::kBFloat16),
                       local_attention(q, k.narrow(1, 0, 25), v.narrow(1, 0, 25), part(0, 25)).lse};
    local_attention_(low, q, k.narrow(1, 25, 25), v.narrow(1, 25, 25), part(25, 25));
    EXPECT_EQ(low.out.scalar_type(), at::kBFloat16);
    EXPECT_LE((low.out.to(at::kFloat) - whole.out).abs().max().item<double>(), 2e-2);
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
    EXPECT_NE(std::string(e.what()).find("none of blas, avx2, avx512"), std::string::npos) << e.what();
  }
}
