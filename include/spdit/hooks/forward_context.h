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

  /// Inside the sharded region: after the first split, until a gather.
  bool sp_active() const { return sp_active_; }
  void set_sp_active(bool active) { sp_active_ = active; }

  /// The config of the plan whose hooks ran in this call (null outside SP).
  const SequenceParallelConfig* config = nullptr;

  /// Names of plan hooks that fired, so the root can verify all did.
  std::set<std::string> fired_hooks;

 private:
  struct Padding {
    int64_t original;
    int64_t padded;
  };
  std::vector<Padding> paddings_;
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
