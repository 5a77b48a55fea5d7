#pragma once
// State of one forward call on one rank: what the plan's hooks did (padding,
// text length, whether the sequence is currently sharded) so that attention
// and later gathers can act on it. Scoped to the outermost hooked call and
// thread-local, so ranks running as threads each have their own.
#include <ATen/ATen.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace spdit {

struct SequenceParallelConfig;

class ForwardContext {
 public:
  /// The context of the forward call running on this thread, or nullptr.
  static ForwardContext* current();

  /// auto_pad: a sequence of `original` tokens was padded to `padded`.
  /// Another original length padding to the same `padded` is an error (a
  /// later gather could not tell which to trim to).
  void record_padding(int64_t original, int64_t padded);
  /// The original length of a sequence padded to `padded`, if one was.
  std::optional<int64_t> original_length(int64_t padded) const;
  /// Key-padding mask of a padded full sequence: bool [padded], true for real
  /// tokens; undefined when nothing was padded to that length.
  at::Tensor key_padding_mask(int64_t padded) const;

  /// Text length of a PartialInput ([text, image]) split, when one happened.
  std::optional<int64_t> text_len;

  /// What the plan did in this forward, so that attention, the gathers and
  /// the end-of-forward check can tell a right plan from a wrong one, and an
  /// error can say what state the sequence was in.
  struct Split {
    std::string where;                // "module 'x', argument 'hidden_states'"
    std::vector<int64_t> full_shape;  // before the split
    int64_t dim = 0;
    int64_t length = 0;    // the split part (the image part of a PartialInput)
    int64_t padded = 0;    // after auto_pad (== length when not padded)
    int64_t shard = 0;     // this rank's length of the split part
    int64_t text_len = 0;  // PartialInput: leading rows kept whole
  };
  struct Gather {
    std::string where;
    int64_t shard = 0, full = 0, trimmed_to = 0;
  };
  /// One line each ("module '', argument 'x': [1, 255, 8] -> [1, 128, 8] on
  /// dim 1 (padded 255 -> 256)"), for messages and reports.
  static std::string describe(const Split& s);
  static std::string describe(const Gather& g);
  void record_split(Split s);
  void record_gather(Gather g);
  /// A split or gather skipped because the tensor had other dims than
  /// expected_dims (a plan's intended skip).
  void record_skip(const std::string& where) { skipped_.push_back(where); }
  const std::vector<Split>& splits() const { return splits_; }
  const std::vector<Gather>& gathers() const { return gathers_; }
  const std::vector<std::string>& skipped() const { return skipped_; }
  /// Whether some split of this forward left shards of `length` per rank.
  bool is_shard_length(int64_t length) const;
  /// "64 (module '', argument 'hidden_states'), ..." for messages.
  std::string shard_lengths() const;
  /// Splits whose sequence no gather of this forward brought back whole
  /// (each rank's output would depend on its own rows only, and auto_pad's
  /// padding would stay), named with their entries.
  std::vector<std::string> ungathered_splits() const;
  /// Text lengths already checked to be the same on every rank.
  std::set<int64_t> replicated_text_checked;

  /// The plan's module paths (set by the root hook), and whether each is optional.
  std::vector<std::pair<std::string, bool>> planned;
  /// A multi-line account of this forward's SP state, appended to errors
  /// that leave a forward run under a plan.
  std::string diagnosis() const;

  /// Inside the sharded region: after the first split, until a gather.
  bool sp_active() const { return sp_active_; }
  void set_sp_active(bool active) { sp_active_ = active; }

  /// The config of the plan whose hooks ran in this call (null outside SP).
  const SequenceParallelConfig* config = nullptr;

  /// Names of plan hooks that fired, so the root can verify all did.
  std::set<std::string> fired_hooks;

  /// Clears what one forward recorded (the root's begin hook).
  void reset_records();

 private:
  struct Padding {
    int64_t original;
    int64_t padded;
  };
  std::vector<Padding> paddings_;
  std::vector<Split> splits_;
  std::vector<Gather> gathers_;
  std::vector<std::string> skipped_;
  bool sp_active_ = false;
};

/// Opens a ForwardContext when none is open on this thread; the one that
/// opened it closes it.
class ForwardScope {
 public:
  ForwardScope();
  ~ForwardScope();
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;
  bool owns() const { return owned_ != nullptr; }

 private:
  ForwardContext* owned_ = nullptr;
};

/// Enters the sequence-parallel region by hand, for calling spdit::attention
/// on shards outside a plan (benchmarks, tests): opens a ForwardContext that
/// is SP-active under `config`.
///
///   SpRegionScope region(cfg);
///   region.context().record_padding(n, padded);  // optional
///   auto out = spdit::attention(q, k, v);
class SpRegionScope {
 public:
  explicit SpRegionScope(const SequenceParallelConfig& config);
  ForwardContext& context() { return *ForwardContext::current(); }

 private:
  ForwardScope scope_;
};

}  // namespace spdit
