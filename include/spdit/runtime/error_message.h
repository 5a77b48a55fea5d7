#pragma once
// What an exception says to a user: LibTorch's errors carry a C++ backtrace
// of 20-30 frames that tells a user nothing; it is kept only when
// SPDIT_BACKTRACE=1 is set (for debugging spdit or LibTorch itself).
#include <exception>
#include <string>

namespace spdit {

/// `e.what()`, without LibTorch's backtrace unless SPDIT_BACKTRACE=1.
std::string error_message(const std::exception& e);

/// Whether SPDIT_BACKTRACE=1 asks for LibTorch's backtraces.
bool backtraces_requested();

}  // namespace spdit
