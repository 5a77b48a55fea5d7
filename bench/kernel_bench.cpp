// Micro-benchmarks of the local attention kernel's parts, one thread: the
// whole kernel, its fused softmax pass alone (what the GEMMs do not cover),
// and a Ring step's two ways of adding a block (continue in place against
// compute-then-merge). `spdit bench attention` holds the figures;
// these say where the time inside them goes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <vector>

#include "attention/online_softmax_cpu.h"
#include "spdit/attention/local_attention.h"

namespace {

// OpenBLAS keeps its own thread pool, which at::set_num_threads does not size.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

void one_thread() {
  at::set_num_threads(1);
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}

// B=1, H=8, d=64, S = range(0): FLOPs counted as 4*S*S*d*H. range(1) = 1
// runs the BLAS-block path instead of the CPU's register-tiled kernel.
void BM_LocalAttention(benchmark::State& state) {
  one_thread();
  const int64_t s = state.range(0);
  auto q = at::randn({1, s, 8, 64}), k = at::randn({1, s, 8, 64}), v = at::randn({1, s, 8, 64});
  if (state.range(1)) setenv("SPDIT_CPU_KERNEL", "blas", 1);
  for (auto _ : state) benchmark::DoNotOptimize(spdit::local_attention(q, k, v).out.data_ptr());
  state.SetLabel(spdit::local_attention_cpu_kernel());
  if (state.range(1)) unsetenv("SPDIT_CPU_KERNEL");
  state.counters["GFLOP/s"] =
      benchmark::Counter(4.0 * s * s * 64 * 8 * state.iterations(), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_LocalAttention)
    ->ArgNames({"S", "blas"})
    ->Args({1024, 0})
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Unit(benchmark::kMillisecond);

// The max / exp / sum pass over one 512 x 512 score block.
void BM_OnlineSoftmaxBlock(benchmark::State& state) {
  const int64_t rows = 512, cols = 512;
  auto scores = at::randn({rows, cols});
  auto work = scores.clone();
  std::vector<float> m(rows), l(rows), alpha(rows);
  for (auto _ : state) {
    state.PauseTiming();
    work.copy_(scores);
    std::fill(m.begin(), m.end(), -INFINITY);
    std::fill(l.begin(), l.end(), 0.0f);
    state.ResumeTiming();
    spdit::detail::online_softmax_rows(work.data_ptr<float>(), rows, cols, cols, nullptr, 0.125f,
                                       m.data(), l.data(), alpha.data());
    benchmark::DoNotOptimize(l.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * cols);  // scores per second
}
BENCHMARK(BM_OnlineSoftmaxBlock)->Unit(benchmark::kMicrosecond);

// The two GEMMs of one block pair, as the BLAS path issues them (rows H*d apart).
void BM_BlockGemms(benchmark::State& state) {
  one_thread();
  const int64_t b = 512, ld = 8 * 64;
  auto q = at::randn({b, ld}), k = at::randn({b, ld}), v = at::randn({b, ld}),
       out = at::zeros({b, ld});
  auto s = at::empty({b, b});
  auto qh = q.narrow(1, 0, 64), kh = k.narrow(1, 0, 64), vh = v.narrow(1, 0, 64),
       oh = out.narrow(1, 0, 64);
  for (auto _ : state) {
    at::mm_out(s, qh, kh.t());
    oh.addmm_(s, vh);
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(4.0 * b * b * 64 * state.iterations(), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}
BENCHMARK(BM_BlockGemms)->Unit(benchmark::kMicrosecond);

// One Ring step's block of keys added to an earlier result (S = range(0)):
// continued in place (range(1) = 0) or computed and then merged (1).
void BM_RingStep(benchmark::State& state) {
  one_thread();
  const int64_t s = state.range(0);
  const bool merge = state.range(1) == 1;
  const spdit::LocalAttentionOptions fp32{std::nullopt, {}, {}, true};
  auto q = at::randn({1, s, 8, 64}), k = at::randn({1, s, 8, 64}), v = at::randn({1, s, 8, 64});
  auto first = spdit::local_attention(q, k, v, fp32);
  for (auto _ : state) {
    spdit::AttentionState acc{first.out.clone(), first.lse.clone()};
    if (merge) {
      spdit::merge_attention_(acc, spdit::local_attention(q, k, v, fp32));
    } else {
      spdit::local_attention_(acc, q, k, v);
    }
    benchmark::DoNotOptimize(acc.out.data_ptr());
  }
}
BENCHMARK(BM_RingStep)
    ->ArgNames({"S", "merge"})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
