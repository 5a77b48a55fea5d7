// Micro-benchmark of the Ulysses all-to-all on in-process ranks (Gloo over
// loopback): bytes per second as the shard grows.
#include <benchmark/benchmark.h>

#include "spdit/runtime/comm.h"

static void BM_AllToAll2Ranks(benchmark::State& state) {
  const int64_t s = state.range(0);
  int64_t bytes = 0;
  for (auto _ : state) {
    spdit::run_in_process(2, [&](spdit::World& w) {
      auto x = at::randn({1, s, 8, 64});
      for (int i = 0; i < 10; ++i) spdit::all_to_all(w.group(), x, 2, 1);
      if (w.rank() == 0) bytes = w.counters().get("all_to_all").sent;
    });
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_AllToAll2Ranks)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
