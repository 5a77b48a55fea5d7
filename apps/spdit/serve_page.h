#pragma once
// `spdit serve`: the web page at `/`.
#include <string>

namespace spdit::cli {
/// A form (prompt, size, steps, seed, Generate), progress while it runs and
/// the picture. Query parameters fill the form (prompt, size, steps, seed,
/// key for --api-key); `run=1` also presses Generate (the browser test).
const std::string& serve_page_html();
}  // namespace spdit::cli
