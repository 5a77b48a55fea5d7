#include "cache_blocking.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

namespace spdit::detail {
namespace {

// "48K", "1024K", "32M" as in sysfs; 0 when unreadable.
int64_t parse_size(const std::string& s) {
  char* end = nullptr;
  const long long n = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || n <= 0) return 0;
  const char unit = *end;
  return n * (unit == 'K'   ? 1024LL
              : unit == 'M' ? 1024LL * 1024
              : unit == 'G' ? 1024LL * 1024 * 1024
                            : 1LL);
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// sysfs gives the size of one instance (one core's L2). glibc's sysconf
// does on Intel, but on AMD its L3 figure is the whole package's, so sysfs
// comes first and sysconf is the fallback (containers without /sys).
CacheSizes read_cache_sizes() {
  CacheSizes c;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level"), type = read_line(dir + "type");
    if (level.empty()) break;
    const int64_t size = parse_size(read_line(dir + "size"));
    if (level == "1" && type == "Data") c.l1d = size;
    if (level == "2" && (type == "Unified" || type == "Data")) c.l2 = size;
  }
  c.source = "/sys/devices/system/cpu/cpu0/cache";
  if (c.l1d <= 0 || c.l2 <= 0) {
    c.l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    c.l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    c.source = "sysconf";
  }
  if (c.l1d <= 0 || c.l2 <= 0) {
    // The smallest of the x86-64 cores we know with AVX2 (Skylake client):
    // too small a block costs a few percent, too large one falls out of L2.
    c.l1d = 32 * 1024;
    c.l2 = 256 * 1024;
    c.source = "default (no sysfs, no sysconf answer)";
  }
  return c;
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = read_cache_sizes();
  return sizes;
}

int64_t key_block(int64_t d, int64_t elt_bytes, int64_t granule) {
  if (const char* want = std::getenv("SPDIT_ATTENTION_KEY_BLOCK"); want && *want) {
    const int64_t n = std::max<int64_t>(1, std::strtoll(want, nullptr, 10));
    return (n + granule - 1) / granule * granule;
  }
  const int64_t per_key = 2 * d * elt_bytes;  // one key's packed K and V
  const int64_t keys = cache_sizes().l2 / 2 / std::max<int64_t>(1, per_key);
  return std::max(granule, keys / granule * granule);
}

}  // namespace spdit::detail
