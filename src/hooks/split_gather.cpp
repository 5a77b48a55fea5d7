#include "split_gather.h"

#include <stdexcept>

#include "spdit/runtime/comm.h"

namespace spdit::detail {
namespace {

// expected_dims mismatches are skipped, as the reference does. The skip is
// the plan's intent (Wan's timestep is per-token only in some variants), so it
// is recorded, not warned: nothing that was not split is ever gathered, and a
// forward in which the plan split nothing says so once.
bool dims_match(ForwardContext& ctx, const at::Tensor& t, const std::optional<int64_t>& expected,
                const std::string& where) {
  if (!expected || t.dim() == *expected) return true;
  ctx.record_skip(where + " (" + std::to_string(t.dim()) + " dims, expected_dims " +
                  std::to_string(*expected) + ")");
  return false;
}

int64_t wrap_dim(int64_t dim, const at::Tensor& t, const std::string& where, const char* field) {
  const int64_t n = t.dim();
  if (dim < -n || dim >= n) {
    throw std::invalid_argument("spdit: " + where + ": " + field + "=" + std::to_string(dim) +
                                " is out of range for a tensor of shape " +
                                std::string(c10::str(t.sizes())));
  }
  return dim < 0 ? dim + n : dim;
}

at::Tensor pad_to(const at::Tensor& t, int64_t dim, int64_t length) {
  if (t.size(dim) == length) return t;
  auto shape = t.sizes().vec();
  shape[dim] = length - t.size(dim);
  return at::cat({t, at::zeros(shape, t.options())}, dim);
}

// Splits a whole sequence of length L along `dim` into P shards and records
// the split (`record` carries the entry, full shape and text rows).
at::Tensor shard(ForwardContext& ctx, const SequenceParallelConfig& cfg, const at::Tensor& t,
                 int64_t dim, bool auto_pad, const std::string& where,
                 ForwardContext::Split record) {
  const int64_t p = cfg.get_world_size();
  const int64_t length = t.size(dim);
  if (length < p) {
    throw std::invalid_argument("spdit: " + where + ": length " + std::to_string(length) +
                                " along dim " + std::to_string(dim) +
                                " is shorter than the SP size " + std::to_string(p) +
                                "; use fewer ranks or a longer sequence");
  }
  at::Tensor x = t;
  if (length % p != 0) {
    // A length auto-padded earlier in this call (e.g. hidden_states) is padded
    // the same way here (e.g. its RoPE table), so shards stay aligned.
    const int64_t padded = (length + p - 1) / p * p;
    auto earlier = ctx.original_length(padded);
    if (!auto_pad && !(earlier && *earlier == length)) {
      throw std::invalid_argument(
          "spdit: " + where + ": length " + std::to_string(length) + " along dim " +
          std::to_string(dim) + " is not divisible by the SP size " + std::to_string(p) +
          "; set auto_pad=true on this SequenceParallelInput, or choose a length that is a "
          "multiple of " +
          std::to_string(p) +
          ". If this tensor is text that attention uses whole (joint text, or the context of "
          "cross-attention), do not split it at all: remove it from the plan");
    }
    ctx.record_padding(length, padded);
    x = pad_to(t, dim, padded);
  }
  const int64_t chunk = x.size(dim) / p;
  record.dim = dim;
  record.length = length;
  record.padded = x.size(dim);
  record.shard = chunk;
  ctx.record_split(std::move(record));
  ctx.set_sp_active(true);
  // An owned copy: a view would keep the whole (possibly padded) tensor alive
  // on every rank for the rest of the forward.
  return x.narrow(dim, cfg.get_rank() * chunk, chunk).clone(at::MemoryFormat::Contiguous);
}

}  // namespace

at::Tensor split_input(ForwardContext& ctx, const SequenceParallelConfig& cfg, const at::Tensor& t,
                       const SequenceParallelInput& spec, const std::string& where) {
  if (!dims_match(ctx, t, spec.expected_dims, where)) return t;
  const int64_t dim = wrap_dim(spec.split_dim, t, where, "split_dim");
  return shard(ctx, cfg, t, dim, spec.auto_pad, where, {where, t.sizes().vec()});
}

at::Tensor split_partial(ForwardContext& ctx, const SequenceParallelConfig& cfg,
                         const at::Tensor& t, const SequenceParallelPartialInput& spec,
                         int64_t text_len, const std::string& where) {
  if (!dims_match(ctx, t, spec.expected_dims, where)) return t;
  const int64_t dim = wrap_dim(spec.split_dim, t, where, "split_dim");
  if (text_len < 0 || text_len > t.size(dim)) {
    throw std::invalid_argument("spdit: " + where + ": text length " + std::to_string(text_len) +
                                " does not fit a tensor of length " + std::to_string(t.size(dim)) +
                                " along dim " + std::to_string(dim));
  }
  auto text = t.narrow(dim, 0, text_len);
  ForwardContext::Split record{where, t.sizes().vec()};
  record.text_len = text_len;
  auto image = shard(ctx, cfg, t.narrow(dim, text_len, t.size(dim) - text_len), dim,
                     /*auto_pad=*/false,
                     where + " (image part after " + std::to_string(text_len) + " text tokens)",
                     std::move(record));
  ctx.text_len = text_len;
  return at::cat({text, image}, dim);
}

at::Tensor gather_output(ForwardContext& ctx, const SequenceParallelConfig& cfg,
                         const at::Tensor& t, const SequenceParallelOutput& spec,
                         const std::string& where) {
  if (!dims_match(ctx, t, spec.expected_dims, where)) return t;
  const int64_t dim = wrap_dim(spec.gather_dim, t, where, "gather_dim");
  // A tensor that was never split must never be gathered: with every split
  // of this forward skipped (expected_dims), each rank holds the whole
  // sequence, and a gather would repeat it P times.
  if (ctx.splits().empty()) return t;
  const int64_t local = t.size(dim);
  if (!ctx.is_shard_length(local)) {
    throw std::invalid_argument(
        "spdit: " + where + ": gather_dim=" + std::to_string(spec.gather_dim) + " has size " +
        std::to_string(local) + " in a tensor of shape " + std::string(c10::str(t.sizes())) +
        ", but this forward's splits left shards of " + ctx.shard_lengths() +
        " per rank. Gather on the sequence dim (the one whose size is the shard length), "
        "or split the tensor that reaches this output");
  }
  auto full = all_gather(cfg.state().sp_group(), t, dim);
  const int64_t gathered = full.size(dim);
  if (auto original = ctx.original_length(gathered)) {
    full = full.narrow(dim, 0, *original).contiguous();
  }
  ctx.record_gather({where, local, gathered, full.size(dim)});
  ctx.set_sp_active(false);
  return full;
}

}  // namespace spdit::detail
