#pragma once
// Private: how far the CPU attention kernel walks K and V before it goes back
// to the first query row, chosen from the cache sizes of the machine it runs
// on. Each query row group reads every key of a block once; with the block's
// packed K and V held in L2, all row groups after the first read them from
// there instead of from L3 or memory (at S = 8192, d = 64 a head's K and V
// are 4 MB, more than a core's L2 on Zen 4 or Sapphire Rapids).
#include <cstdint>

namespace spdit::detail {

/// Per-core data cache sizes in bytes, read once at run time from
/// /sys/devices/system/cpu/cpu0/cache (per instance), else sysconf; `source`
/// says which (or "default" when neither answered).
struct CacheSizes {
  int64_t l1d = 0, l2 = 0;
  const char* source = "";
};
const CacheSizes& cache_sizes();

/// Keys per L2 block for head dim d and packed elements of `elt_bytes`: the
/// largest multiple of `granule` (the kernel's score block) whose packed K
/// and V take at most half of L2 (the other half holds the streaming query
/// and output rows and whatever else the core touches), and at least one
/// granule. SPDIT_ATTENTION_KEY_BLOCK (keys, rounded up to a granule) sets it
/// instead, to compare choices in a benchmark.
int64_t key_block(int64_t d, int64_t elt_bytes, int64_t granule);

}  // namespace spdit::detail
