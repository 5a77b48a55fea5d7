#include "spdit/hooks/forward_context.h"

#include <sstream>
#include <stdexcept>
#include <string>

#include "spdit/plan/sp_config.h"

namespace spdit {
namespace {
thread_local ForwardContext* g_context = nullptr;
}

ForwardContext* ForwardContext::current() { return g_context; }

void ForwardContext::record_padding(int64_t original, int64_t padded) {
  for (const auto& p : paddings_) {
    if (p.padded != padded) continue;
    if (p.original == original) return;
    throw std::invalid_argument(
        "spdit: auto_pad padded sequences of " + std::to_string(p.original) + " and " +
        std::to_string(original) + " tokens both to " + std::to_string(padded) +
        "; a later gather cannot tell which length to trim to. Give them the same length or "
        "pad one of them in the model");
  }
  paddings_.push_back({original, padded});
}

std::optional<int64_t> ForwardContext::original_length(int64_t padded) const {
  for (const auto& p : paddings_) {
    if (p.padded == padded) return p.original;
  }
  return std::nullopt;
}

void ForwardContext::record_split(Split s) { splits_.push_back(std::move(s)); }

void ForwardContext::record_gather(Gather g) { gathers_.push_back(std::move(g)); }

bool ForwardContext::is_shard_length(int64_t length) const {
  for (const auto& s : splits_) {
    if (s.shard == length) return true;
  }
  return false;
}

std::string ForwardContext::shard_lengths() const {
  std::string out;
  for (const auto& s : splits_) {
    out += (out.empty() ? "" : ", ") + std::to_string(s.shard) + " (" + s.where + ")";
  }
  return out.empty() ? "none (nothing was split)" : out;
}

std::vector<std::string> ForwardContext::ungathered_splits() const {
  std::vector<std::string> out;
  for (const auto& s : splits_) {
    bool gathered = false;
    for (const auto& g : gathers_)
      gathered = gathered || (g.shard == s.shard && g.full == s.padded);
    if (gathered) continue;
    out.push_back(s.where + ": " + std::to_string(s.length) + " tokens" +
                  (s.padded != s.length ? " (padded to " + std::to_string(s.padded) + ")" : "") +
                  " in shards of " + std::to_string(s.shard));
  }
  return out;
}

void ForwardContext::reset_records() {
  fired_hooks.clear();
  paddings_.clear();
  splits_.clear();
  gathers_.clear();
  skipped_.clear();
  replicated_text_checked.clear();
  text_len.reset();
  sp_active_ = false;
}

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}
}  // namespace

std::string ForwardContext::describe(const Split& s) {
  auto local = s.full_shape;
  if (!local.empty()) local[s.dim] = s.text_len + s.shard;
  std::string out = s.where + ": " + shape_str(s.full_shape) + " -> " + shape_str(local) +
                    " on dim " + std::to_string(s.dim);
  if (s.text_len) out += " (first " + std::to_string(s.text_len) + " text rows whole)";
  if (s.padded != s.length) {
    out += " (padded " + std::to_string(s.length) + " -> " + std::to_string(s.padded) + ")";
  }
  return out;
}

std::string ForwardContext::describe(const Gather& g) {
  std::string out =
      g.where + ": " + std::to_string(g.shard) + " per rank -> " + std::to_string(g.full);
  if (g.trimmed_to != g.full) out += ", trimmed to " + std::to_string(g.trimmed_to);
  return out;
}

std::string ForwardContext::diagnosis() const {
  std::ostringstream os;
  os << "spdit: state of this forward under the SP plan";
  if (config && config->is_initialized()) {
    os << " (sp_rank " << config->get_rank() << " of " << config->get_world_size() << ", ulysses "
       << config->get_ulysses_world_size() << " x ring " << config->get_ring_world_size() << ")";
  }
  os << ":\n  splits:";
  if (splits_.empty()) os << " none";
  for (const auto& s : splits_) os << "\n    " << describe(s);
  for (const auto& w : skipped_) os << "\n    skipped (not expected_dims): " << w;
  os << "\n  gathers:";
  if (gathers_.empty()) os << " none";
  for (const auto& g : gathers_) os << "\n    " << describe(g);
  std::string pending;
  for (const auto& [path, optional] : planned) {
    if (!fired_hooks.count(path)) {
      pending += (pending.empty() ? "" : ", ") + (path.empty() ? std::string("\"\" (root)") : path);
    }
  }
  os << "\n  plan hooks not run yet: " << (pending.empty() ? "none" : pending);
  os << "\n  the sequence is " << (sp_active_ ? "split across the ranks" : "whole on every rank");
  if (sp_active_ && !splits_.empty()) {
    // Shape errors under a plan name one of these lengths: say what each is.
    std::set<int64_t> shards, fulls;
    for (const auto& s : splits_) {
      shards.insert(s.shard);
      fulls.insert(s.length);
      fulls.insert(s.padded);
    }
    auto list = [](const std::set<int64_t>& v) {
      std::string out;
      for (int64_t x : v) out += (out.empty() ? "" : ", ") + std::to_string(x);
      return out;
    };
    os << "\n  hints: a size of " << list(shards) << " is this rank's shard, " << list(fulls)
       << " the whole sequence. A shard met by a whole-sequence tensor (a RoPE table, a mask, a "
          "per-token embedding) means that tensor needs its own split (split_output on the "
          "module that makes it); a shard reaching a reshape (the unpatchify) means a missing "
          "gather: a SequenceParallelOutput on the module that leaves the sequence, called "
          "through its hooks (not ->forward()), on the sequence dim";
  }
  return os.str();
}

at::Tensor ForwardContext::key_padding_mask(int64_t padded) const {
  auto original = original_length(padded);
  if (!original || *original == padded) return at::Tensor();
  return at::arange(padded, at::kLong) < *original;
}

ForwardScope::ForwardScope() {
  if (!g_context) {
    owned_ = new ForwardContext();
    g_context = owned_;
  }
}

ForwardScope::~ForwardScope() {
  if (owned_) {
    g_context = nullptr;
    delete owned_;
  }
}

SpRegionScope::SpRegionScope(const SequenceParallelConfig& config) {
  ForwardContext& ctx = context();
  ctx.config = &config;
  ctx.set_sp_active(true);
}

}  // namespace spdit
