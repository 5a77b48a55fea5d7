#pragma once
// The machine a benchmark ran on, for its JSON and docs/performance.md.
#include <nlohmann/json.hpp>

namespace spdit::cli {
nlohmann::json machine_info();
}
