#pragma once
// Files a command will write at the end (--out, --json), checked before any
// work: a run must not spend its hours and then fail to save.
#include <string>

namespace spdit::cli {

/// Throws naming `flag`, the path and the OS's reason when `path` cannot be
/// opened for writing; "" passes. Leaves no file behind that was not there.
void check_can_write(const std::string& path, const std::string& flag);

}  // namespace spdit::cli
