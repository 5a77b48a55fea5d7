#include "predict.h"

#include <set>
#include <stdexcept>

#include "spdit/attention/comm_model.h"

namespace spdit::cli {

int64_t StepPrediction::total_bytes() const {
  int64_t t = 0;
  for (const auto& [k, v] : bytes) t += v;
  return t;
}

StepPrediction predict_step(const models::ForwardShapes& shapes, const models::RunSize& size,
                            int64_t u, int64_t r, Guidance guidance) {
  StepPrediction p;
  p.sp_size = u * r;
  const int64_t n = shapes.tokens, ps = p.sp_size;
  p.padded_tokens = (n + ps - 1) / ps * ps;
  p.tokens_per_rank = p.padded_tokens / ps;
  if (n < ps) {
    p.errors.push_back("the sequence has " + std::to_string(n) + " tokens, fewer than the " +
                       std::to_string(ps) + " ranks: use fewer ranks or a larger --height/--width" +
                       std::string(size.frames > 1 ? "/--frames" : ""));
  } else if (p.padded_tokens != n) {
    p.notes.push_back(std::to_string(n) + " tokens do not divide by " + std::to_string(ps) +
                      " ranks: auto_pad pads to " + std::to_string(p.padded_tokens) + " (" +
                      std::to_string(p.padded_tokens - n) + " masked tokens)");
  }
  std::set<int64_t> text_lengths;
  for (const auto& a : shapes.attention) {
    if (a.text_len > 0) text_lengths.insert(a.text_len);
    // skip_sp attention runs locally on all its heads: no Ulysses, no padding.
    if (a.sharded && a.heads % u != 0) {
      const int64_t hp = (a.heads + u - 1) / u * u;
      p.notes.push_back(a.name + ": " + std::to_string(a.heads) +
                        " heads do not divide by ulysses " + std::to_string(u) + ": padded to " +
                        std::to_string(hp) +
                        " (zero heads, computed and dropped); a ulysses degree dividing " +
                        std::to_string(a.heads) + " avoids the waste");
    }
    if (!a.sharded || ps == 1 || !p.errors.empty()) continue;
    AttentionCommShape s{size.batch, a.tokens,          a.text_len, a.heads,
                         a.head_dim, shapes.elem_bytes, false};
    for (const auto& [kind, b] : attention_comm_bytes(s, u, r)) p.bytes[kind] += b * a.count;
  }
  if (ps > 1 && p.errors.empty()) {
    // Attention checks once per forward and text length that the text is the
    // same on every rank (three int64 per rank).
    if (!text_lengths.empty()) {
      p.bytes["metadata"] += static_cast<int64_t>(text_lengths.size()) * 3 * 8 * (ps - 1);
    }
    for (const auto& site : shapes.sites) {
      if (!site.gather) continue;
      int64_t local = shapes.elem_bytes;
      for (size_t i = 0; i < site.full_shape.size(); ++i) {
        local *= static_cast<int64_t>(i) == site.dim ? p.tokens_per_rank : site.full_shape[i];
      }
      p.bytes["all_gather"] += local * (ps - 1);
    }
  }
  if (guidance == Guidance::kSerial) {
    for (auto& [kind, b] : p.bytes) b *= 2;
  }
  if (guidance == Guidance::kParallel && p.errors.empty()) {
    // Each rank's full fp32 velocity (what the plan gathers) to the other branch.
    for (const auto& site : shapes.sites) {
      if (!site.gather) continue;
      int64_t numel = 1;
      for (auto d : site.full_shape) numel *= d;
      p.bytes["all_gather"] += numel * 4;
    }
  }
  return p;
}

void add_sharded_weights(StepPrediction& p, int64_t per_forward, Guidance guidance) {
  if (per_forward == 0) return;
  p.bytes["all_gather"] += per_forward * (guidance == Guidance::kSerial ? 2 : 1);
  p.notes.push_back("--shard-weights: every block's weights are all-gathered as it runs, " +
                    std::to_string(per_forward) + " bytes per forward and rank");
}

void throw_if_impossible(const StepPrediction& p) {
  if (p.errors.empty()) return;
  std::string msg;
  for (const auto& e : p.errors) msg += (msg.empty() ? "" : "; ") + e;
  throw std::invalid_argument(msg);
}

}  // namespace spdit::cli
