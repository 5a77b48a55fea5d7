#include "auto_layout.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <map>
#include <sstream>

#include "error_text.h"
#include "spdit/runtime/comm.h"
#include "spdit/runtime/memory_meter.h"
#include "spdit/sharding/sharded_weights.h"

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

std::string layout_name(const LayoutCandidate& c) {
  return "cfg " + std::to_string(c.cfg) + " x ulysses " + std::to_string(c.ulysses) + " x ring " +
         std::to_string(c.ring) + (c.shard ? ", sharded weights" : "");
}

}  // namespace

int64_t MemoryNeed::weights_per_rank(int ranks, bool shard) const {
  if (!shard || ranks < 2) return weights;
  return weights - blocks + (blocks + ranks - 1) / ranks + 2 * largest_block;
}

int64_t estimate_activation_bytes(const models::ForwardShapes& shapes, const models::RunSize& size,
                                  const StepPrediction& prediction, int64_t ring) {
  int64_t width = 0, text = 0;
  for (const auto& a : shapes.attention) {
    width = std::max(width, a.heads * a.head_dim);
    text = std::max(text, a.text_len);
  }
  const int64_t rows = size.batch * (prediction.tokens_per_rank + text);
  // Live at the MLP, the widest point: two residual streams, the attention's
  // q, k, v and output (4), the 4x hidden layer and its activation (8); Ring
  // adds two key/value blocks in flight (4). A model keeps more than this at
  // moments (measured in docs/performance.md §12), hence the 1.5.
  const double widths = 14.0 + (ring > 1 ? 4.0 : 0.0);
  return static_cast<int64_t>(1.5 * widths * static_cast<double>(rows * width) *
                              static_cast<double>(shapes.elem_bytes));
}

MemoryNeed memory_budget(const std::string& flag_value, int local_ranks) {
  MemoryNeed m;
  if (flag_value.empty()) return m;
  if (flag_value == "auto") {
    const int64_t avail = available_memory_bytes();
    if (avail <= 0) {
      throw std::invalid_argument(
          "--memory-per-rank auto: this machine does not say how much memory is available "
          "(/proc/meminfo); give the bytes, e.g. --memory-per-rank 8e9");
    }
    m.budget = avail / std::max(1, local_ranks);
    m.source = "auto: " + format_bytes(avail) + " available here" +
               (local_ranks > 1 ? " / " + std::to_string(local_ranks) + " ranks" : "");
    return m;
  }
  char* end = nullptr;
  const double v = std::strtod(flag_value.c_str(), &end);
  if (end == flag_value.c_str() || *end || !(v >= 1) || v > 1e18) {
    throw std::invalid_argument("--memory-per-rank '" + flag_value +
                                "' is neither a number of bytes (e.g. 8e9 or 8000000000) nor "
                                "'auto' (the memory available, shared by the ranks)");
  }
  m.budget = static_cast<int64_t>(v);
  m.source = "--memory-per-rank " + flag_value;
  return m;
}

void add_model_weights(MemoryNeed& need, torch::nn::Module& model, int ranks,
                       const std::function<at::ScalarType(const std::string&)>& dtype_of) {
  auto bytes = [&](const std::string& name, const at::Tensor& t) {
    const auto dtype =
        dtype_of && at::isFloatingType(t.scalar_type()) ? dtype_of(name) : t.scalar_type();
    return t.numel() * static_cast<int64_t>(c10::elementSize(dtype));
  };
  need.weights = need.blocks = need.largest_block = 0;
  for (const auto& p : model.named_parameters(true)) need.weights += bytes(p.key(), p.value());
  const auto params = model.named_parameters(true);
  std::map<std::string, int64_t> per_block;
  for (const auto& name : ShardedWeights::block_parameter_names(model)) {
    const int64_t b = bytes(name, params[name]);
    need.blocks += b;
    // "transformer_blocks.3.attn.to_q.weight" -> "transformer_blocks.3"
    const auto first = name.find('.'), second = name.find('.', first + 1);
    per_block[name.substr(0, second)] += b;
  }
  for (const auto& [block, b] : per_block) need.largest_block = std::max(need.largest_block, b);
  need.gathered_per_forward = ranks > 1 && need.blocks > 0
                                  ? ShardedWeights::predict_received_bytes_per_forward(model, ranks)
                                  : 0;
}

std::vector<LayoutCandidate> weigh_layouts(const models::ForwardShapes& shapes,
                                           const models::RunSize& size, int64_t parameters,
                                           int ranks, bool guided, const MachineSpeed& speed,
                                           const MemoryNeed& memory) {
  std::vector<LayoutCandidate> out;
  // Sharding is weighed only where the model's weights are known.
  const std::vector<bool> shardings =
      ranks > 1 && memory.blocks > 0 ? std::vector<bool>{false, true} : std::vector<bool>{false};
  for (int cfg : {1, 2}) {
    if (cfg == 2 && (!guided || ranks % 2 != 0)) continue;
    const int sp = ranks / cfg;
    for (int u = 1; u <= sp; ++u) {
      if (sp % u != 0) continue;
      for (const bool shard : shardings) {
        LayoutCandidate c;
        c.cfg = cfg, c.ulysses = u, c.ring = sp / u, c.shard = shard;
        const auto guidance = guidance_of(guided ? 2.0 : 1.0, cfg);
        c.prediction = predict_step(shapes, size, u, c.ring, guidance);
        if (shard) add_sharded_weights(c.prediction, memory.gathered_per_forward, guidance);
        c.weight_bytes = memory.weights_per_rank(ranks, shard);
        c.activation_bytes = estimate_activation_bytes(shapes, size, c.prediction, c.ring);
        c.fits = memory.budget <= 0 || c.weight_bytes + c.activation_bytes <= memory.budget;
        c.possible = c.prediction.errors.empty() && c.fits;
        const double forwards = guidance == Guidance::kSerial ? 2 : 1;
        c.flops = forward_flops(shapes, size, parameters, u, c.ring, c.prediction) * forwards;
        c.compute_seconds = c.flops / speed.flops_per_s;
        // Ulysses' all-to-alls and the gathers wait; Ring's key/value passes run
        // behind the attention they feed, so only what exceeds it is waited for.
        double waited = 0, hidden = 0;
        for (const auto& [kind, b] : c.prediction.bytes) {
          (kind == "ring_exchange" ? hidden : waited) += static_cast<double>(b);
        }
        // The weights' gathers run behind the previous block's compute.
        const double gathers = shard ? static_cast<double>(memory.gathered_per_forward) *
                                           (guidance == Guidance::kSerial ? 2 : 1)
                                     : 0.0;
        waited -= gathers;
        const double attention_share = 0.5 * c.compute_seconds;
        c.comm_seconds = waited / speed.link_bytes_per_s +
                         std::max(0.0, hidden / speed.link_bytes_per_s - attention_share) +
                         std::max(0.0, gathers / speed.link_bytes_per_s - c.compute_seconds);
        c.step_seconds = c.compute_seconds + c.comm_seconds;
        for (const auto& n : c.prediction.notes) c.costs.push_back(n);
        for (const auto& e : c.prediction.errors) c.costs.push_back("impossible: " + e);
        if (!c.fits) {
          c.costs.push_back("does not fit: needs " +
                            format_bytes(c.weight_bytes + c.activation_bytes) +
                            " per rank, more than the " + format_bytes(memory.budget) + " (" +
                            memory.source + ")");
        }
        out.push_back(std::move(c));
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const LayoutCandidate& a, const LayoutCandidate& b) {
    if (a.possible != b.possible) return a.possible;
    if (a.step_seconds != b.step_seconds) return a.step_seconds < b.step_seconds;
    return !a.shard && b.shard;  // a tie: replicated weights move nothing
  });
  if (!out.empty() && out.front().possible) {
    const auto& best = out.front();
    for (auto& c : out) {
      if (&c == &best || !c.possible) continue;
      if (c.shard && !best.shard) {
        c.costs.push_back("not chosen: sharding moves weights every forward, and the replicated " +
                          layout_name(best) + " fits");
      } else {
        c.costs.push_back("not chosen: slower than " + layout_name(best));
      }
    }
    auto& chosen = out.front();
    chosen.costs.push_back(
        std::string("chosen: the fastest layout") +
        (memory.budget > 0 ? " that fits " + format_bytes(memory.budget) + " per rank" : "") +
        (chosen.shard ? "; replicated weights (" + format_bytes(memory.weights) +
                            ") do not fit beside the activations"
                      : ""));
  }
  return out;
}

void throw_if_nothing_fits(const std::vector<LayoutCandidate>& candidates,
                           const MemoryNeed& memory) {
  if (candidates.empty() || candidates.front().possible) return;
  const LayoutCandidate* least = nullptr;
  for (const auto& c : candidates) {
    if (!c.prediction.errors.empty()) continue;
    if (!least ||
        c.weight_bytes + c.activation_bytes < least->weight_bytes + least->activation_bytes)
      least = &c;
  }
  if (!least) {
    throw_if_impossible(candidates.front().prediction);
    return;
  }
  throw std::invalid_argument(
      "--parallel auto: no layout fits in " + format_bytes(memory.budget) + " per rank (" +
      memory.source + "); the least any needs is " +
      format_bytes(least->weight_bytes + least->activation_bytes) + " per rank (" +
      layout_name(*least) + ": weights " + format_bytes(least->weight_bytes) + " + activations " +
      format_bytes(least->activation_bytes) +
      "). Give each rank more memory, run more ranks (sharded weights shrink with them), "
      "use --dtype bf16, or a smaller size");
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
    os << (i == 0 && c.possible ? "  * " : "    ") << layout_name(c) << ": ";
    if (!c.possible) {
      os << "impossible";
    } else {
      os << c.step_seconds << " s (compute " << c.compute_seconds << " s for " << c.flops / 1e9
         << " GFLOP, communication waited " << c.comm_seconds << " s for "
         << c.prediction.total_bytes() << " bytes)";
    }
    if (c.weight_bytes > 0) {
      os << "; memory " << format_bytes(c.weight_bytes + c.activation_bytes)
         << " per rank (weights " << format_bytes(c.weight_bytes) << " + activations ~"
         << format_bytes(c.activation_bytes) << ")";
    }
    os << "\n";
    for (const auto& why : c.costs) os << "        " << why << "\n";
  }
  return os.str();
}

std::string LayoutChoice::table() const {
  std::string t = describe(candidates, speed);
  if (memory.budget > 0) {
    t += "memory per rank: " + format_bytes(memory.budget) + " (" + memory.source + "); weights " +
         format_bytes(memory.weights) + " whole, of which blocks " + format_bytes(memory.blocks) +
         "\n";
  }
  return t;
}

LayoutChoice choose_layout(models::Pipeline& pipe, const models::ForwardShapes& shapes,
                           const models::RunSize& size, int ranks, bool guided, World* world,
                           double assumed_link_gbps, MemoryNeed memory,
                           const std::function<at::ScalarType(const std::string&)>& dtype_of) {
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
  add_model_weights(memory, pipe.model(), ranks, dtype_of);
  c.memory = memory;
  c.candidates = weigh_layouts(shapes, size, parameters, ranks, guided, c.speed, memory);
  return c;
}

}  // namespace spdit::cli
