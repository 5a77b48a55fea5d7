#pragma once
// How `spdit` words an error that reached main(): one line a person can act
// on, never LibTorch's stack frames.
#include <cstdint>
#include <string>

namespace spdit::cli {

/// The message without a c10 backtrace ("Exception raised from ...") and
/// without the library's own "spdit: " prefix, which main's "spdit CMD:
/// error:" already says.
std::string clean_error_text(const std::string& what);

/// For an allocation failure (c10's "can't allocate memory", std::bad_alloc):
/// how much was asked, how much the machine has, and what to change; ""
/// for any other error.
std::string out_of_memory_advice(const std::string& what);

/// MemAvailable from /proc/meminfo, in bytes (0 when unknown).
int64_t available_memory_bytes();

/// "47.2 GB", or "812.5 MB" below a gigabyte
std::string gigabytes(double bytes);

}  // namespace spdit::cli
