#include "spdit/hooks/explain.h"

#include <mutex>
#include <sstream>

#include "spdit/hooks/sequence_parallel.h"
#include "spdit/runtime/error_message.h"
#include "spdit/runtime/world.h"

namespace spdit {
std::string PlanReport::describe() const {
  std::ostringstream os;
  os << "SP " << ulysses * ring << " = ulysses " << ulysses << " x ring " << ring << "\n";
  os << "splits (rank 0):\n";
  if (splits.empty()) os << "  none\n";
  for (const auto& s : splits) os << "  " << ForwardContext::describe(s) << "\n";
  for (const auto& w : skipped) os << "  skipped (expected_dims): " << w << "\n";
  os << "gathers:\n";
  if (gathers.empty()) os << "  none\n";
  for (const auto& g : gathers) os << "  " << ForwardContext::describe(g) << "\n";
  os << "communication per rank and forward:";
  int64_t total = 0;
  for (const auto& [kind, b] : bytes) {
    if (b.sent == 0 && b.calls == 0) continue;
    os << "\n  " << kind << ": " << b.sent << " bytes in " << b.calls << " call(s)";
    total += b.sent;
  }
  os << "\n  total: " << total << " bytes\n";
  if (!error.empty()) os << "error: " << error << "\n";
  return os.str();
}

PlanReport explain(const std::function<std::shared_ptr<HookableModule>()>& build,
                   const SequenceParallelConfig& config, std::vector<Value> positional,
                   std::vector<Kwarg> named) {
  const int u = config.ulysses_degree, r = config.ring_degree;
  auto models = make_rank_models(u * r, build);
  PlanReport report;
  report.ulysses = u;
  report.ring = r;
  std::mutex mutex;
  run_in_process(u * r, [&](World& w) {
    HookableModule& model = *models[w.rank()];
    // Registered before the plan's hooks, so it copies the record before the
    // end-of-forward check (which may throw) runs.
    if (w.rank() == 0) {
      HookRegistry::add(model, Hook{"spdit.explain", nullptr, [&](const BoundArgs&, Outputs&) {
                                      const ForwardContext& ctx = *ForwardContext::current();
                                      report.splits = ctx.splits();
                                      report.gathers = ctx.gathers();
                                      report.skipped = ctx.skipped();
                                    }});
    }
    std::string error;
    try {
      apply_sequence_parallel(model, SequenceParallelConfig(u, r, config.convert_to_fp32));
      w.counters().reset();
      model.call(positional, named);
      if (w.rank() == 0) {
        for (const auto& [kind, b] : w.counters().snapshot()) report.bytes[kind] = b;
      }
    } catch (const std::exception& e) {
      error = error_message(e);
    }
    remove_sequence_parallel(model);
    if (w.rank() == 0) HookRegistry::remove(model, "spdit.explain");
    std::lock_guard<std::mutex> lock(mutex);
    if (!error.empty() && report.error.empty()) report.error = error;
  });
  return report;
}

}  // namespace spdit
