#include "auto_layout.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <sstream>

#include "spdit/runtime/comm.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;

// FLOPs of one forward on one rank of an SP group of u x r: attention's two
// products on the rank's query share of every key (heads padded to a
// multiple of u), and every weight once per token the rank holds (its image
// tokens, and the replicated text).
double forward_flops(const models::ForwardShapes& shapes, const models::RunSize& size,
                     int64_t parameters, int64_t u, int64_t r, const StepPrediction& p) {
  const double sp = static_cast<double>(u * r);
  double flops = 0;
  int64_t text = 0;
  for (const auto& a : shapes.attention) {
    text = std::max(text, a.text_len);
    if (!a.sharded) {  // cross-attention to replicated text: local
      flops += 4.0 * size.batch * p.tokens_per_rank * a.text_len * a.heads * a.head_dim * a.count;
      continue;
    }
    const double heads = static_cast<double>((a.heads + u - 1) / u * u);
    const double keys = static_cast<double>(p.padded_tokens + a.text_len);
    flops += 4.0 * size.batch * keys * keys * heads * a.head_dim * a.count / sp;
  }
  flops += 2.0 * static_cast<double>(parameters) * size.batch *
           static_cast<double>(p.tokens_per_rank + text);
  return flops;
}

}  // namespace

std::vector<LayoutCandidate> weigh_layouts(const models::ForwardShapes& shapes,
                                           const models::RunSize& size, int64_t parameters,
                                           int ranks, bool guided, const MachineSpeed& speed) {
  std::vector<LayoutCandidate> out;
  for (int cfg : {1, 2}) {
    if (cfg == 2 && (!guided || ranks % 2 != 0)) continue;
    const int sp = ranks / cfg;
    for (int u = 1; u <= sp; ++u) {
      if (sp % u != 0) continue;
      LayoutCandidate c;
      c.cfg = cfg, c.ulysses = u, c.ring = sp / u;
      const auto guidance = guidance_of(guided ? 2.0 : 1.0, cfg);
      c.prediction = predict_step(shapes, size, u, c.ring, guidance);
      c.possible = c.prediction.errors.empty();
      const double forwards = guidance == Guidance::kSerial ? 2 : 1;
      c.flops = forward_flops(shapes, size, parameters, u, c.ring, c.prediction) * forwards;
      c.compute_seconds = c.flops / speed.flops_per_s;
      // Ulysses' all-to-alls and the gathers wait; Ring's key/value passes run
      // behind the attention they feed, so only what exceeds it is waited for.
      double waited = 0, hidden = 0;
      for (const auto& [kind, b] : c.prediction.bytes) {
        (kind == "ring_exchange" ? hidden : waited) += static_cast<double>(b);
      }
      const double attention_share = 0.5 * c.compute_seconds;
      c.comm_seconds = waited / speed.link_bytes_per_s +
                       std::max(0.0, hidden / speed.link_bytes_per_s - attention_share);
      c.step_seconds = c.compute_seconds + c.comm_seconds;
      for (const auto& n : c.prediction.notes) c.costs.push_back(n);
      for (const auto& e : c.prediction.errors) c.costs.push_back("impossible: " + e);
      out.push_back(std::move(c));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const LayoutCandidate& a, const LayoutCandidate& b) {
    if (a.possible != b.possible) return a.possible;
    return a.step_seconds < b.step_seconds;
  });
  return out;
}

MachineSpeed measure_speed(World* world, int64_t width, at::ScalarType dtype) {
  MachineSpeed s;
  at::NoGradGuard no_grad;
  const int64_t n = std::clamp<int64_t>(width, 256, 1024);
  auto a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  (void)at::mm(a, b);
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    (void)at::mm(a, b);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  s.flops_per_s = 2.0 * n * n * n / best;
  s.source = "measured: " +
             std::string(dtype == at::kBFloat16 ? "bf16"
                         : dtype == at::kHalf   ? "fp16"
                                                : "fp32") +
             " GEMM " + std::to_string(n) + "^3";
  if (!world || world->size() < 2) {
    s.link_bytes_per_s = 1e30;  // nothing to move
    return s;
  }
  // 4 MB per rank, exchanged with every other rank: the slowest rank decides.
  auto x = at::randn({world->size(), (1 << 20) / world->size()});
  (void)all_to_all(world->group(), x, 0, 0);
  auto t0 = Clock::now();
  (void)all_to_all(world->group(), x, 0, 0);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double sent = 4.0 * x.numel() * (world->size() - 1) / world->size();
  auto all = all_gather_ints(world->group(), {static_cast<int64_t>(sent / secs)});
  s.link_bytes_per_s = static_cast<double>(*std::min_element(all.begin(), all.end()));
  auto speeds = all_gather_ints(world->group(), {static_cast<int64_t>(s.flops_per_s)});
  s.flops_per_s = static_cast<double>(*std::min_element(speeds.begin(), speeds.end()));
  s.source +=
      ", all-to-all of 4 MB over " + std::to_string(world->size()) + " ranks (slowest rank)";
  return s;
}

std::string describe(const std::vector<LayoutCandidate>& candidates, const MachineSpeed& speed) {
  std::ostringstream os;
  os << std::setprecision(3);
  os << "machine: " << speed.flops_per_s / 1e9 << " GFLOP/s per rank, link ";
  if (speed.link_bytes_per_s > 1e29) {
    os << "unused";
  } else {
    os << speed.link_bytes_per_s / 1e9 << " GB/s per rank";
  }
  os << " (" << speed.source << ")\n";
  os << "layouts weighed (predicted per step and rank; best first):\n";
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    os << (i == 0 && c.possible ? "  * " : "    ") << "cfg " << c.cfg << " x ulysses " << c.ulysses
       << " x ring " << c.ring << ": ";
    if (!c.possible) {
      os << "impossible";
    } else {
      os << c.step_seconds << " s (compute " << c.compute_seconds << " s for " << c.flops / 1e9
         << " GFLOP, communication waited " << c.comm_seconds << " s for "
         << c.prediction.total_bytes() << " bytes)";
    }
    os << "\n";
    for (const auto& why : c.costs) os << "        " << why << "\n";
  }
  return os.str();
}

LayoutChoice choose_layout(models::Pipeline& pipe, const models::ForwardShapes& shapes,
                           const models::RunSize& size, int ranks, bool guided, World* world,
                           double assumed_link_gbps) {
  int64_t parameters = 0;
  for (const auto& p : pipe.model().parameters()) parameters += p.numel();
  const int64_t width =
      shapes.attention.empty() ? 1024 : shapes.attention[0].heads * shapes.attention[0].head_dim;
  LayoutChoice c;
  c.speed = measure_speed(world, width, pipe.dtype());
  if (assumed_link_gbps > 0) {
    std::ostringstream os;
    os << assumed_link_gbps;
    c.speed.link_bytes_per_s = assumed_link_gbps * 1e9;
    c.speed.source +=
        "; link assumed --link-gbps " + os.str() + " (spdit run --parallel auto measures it)";
  }
  c.candidates = weigh_layouts(shapes, size, parameters, ranks, guided, c.speed);
  return c;
}

}  // namespace spdit::cli
