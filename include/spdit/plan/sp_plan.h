#pragma once
// The SP plan: plain data that says where a model's tensors are split across
// the sequence-parallel ranks and where they are gathered back. Names follow
// the reference (`sp_plan`) and diffusers' ContextParallelInput/Output.
//
//   SequenceParallelModelPlan plan = {
//       {"", inputs({{"hidden_states", SequenceParallelInput(1, 3).with_auto_pad()}})},
//       {"pos_embed", inputs({{0, SequenceParallelInput(0, 2).with_split_output()}})},
//       {"proj_out", outputs(SequenceParallelOutput(1, 3))},
//   };
//
// What is never split: text that attention uses whole (joint text, the
// context of cross-attention), timestep and pooled embeddings, weights.
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace torch::nn {
class Module;
}

namespace spdit {

/// `{1, true}` would bind `true` to expected_dims (an int): refused at compile
/// time. Flags are set by name: `.with_auto_pad()`, `.with_split_output()`.
template <typename B>
using IfBool = std::enable_if_t<std::is_same_v<std::decay_t<B>, bool>, int>;

/// Split a tensor along `split_dim` into P pieces; rank k keeps piece k.
/// Fields, in order: split_dim, expected_dims, split_output, auto_pad.
///
///   SequenceParallelInput(1, 3).with_auto_pad()            // hidden_states (B, S, C)
///   SequenceParallelInput(0, 2).with_split_output()        // a RoPE table's output
struct SequenceParallelInput {
  int64_t split_dim = 1;
  /// When set and the tensor has another rank, the split is skipped (silently:
  /// a plan's intended skip; nothing that was not split is ever gathered).
  std::optional<int64_t> expected_dims;
  /// Split the module's output at this index instead of an input.
  bool split_output = false;
  /// Zero-pad split_dim up to a multiple of P; a key-padding mask is recorded
  /// and every later gather trims back to the original length.
  bool auto_pad = false;

  SequenceParallelInput() = default;
  SequenceParallelInput(int64_t dim) : split_dim(dim) {}
  SequenceParallelInput(int64_t dim, std::optional<int64_t> dims)
      : split_dim(dim), expected_dims(dims) {}
  template <typename B, IfBool<B> = 0>
  SequenceParallelInput(int64_t, B) = delete;

  SequenceParallelInput& with_split_dim(int64_t d) {
    split_dim = d;
    return *this;
  }
  SequenceParallelInput& with_expected_dims(std::optional<int64_t> d) {
    expected_dims = d;
    return *this;
  }
  SequenceParallelInput& with_split_output(bool on = true) {
    split_output = on;
    return *this;
  }
  SequenceParallelInput& with_auto_pad(bool on = true) {
    auto_pad = on;
    return *this;
  }
};

/// A tensor laid out [text, image] along `split_dim`: the text part stays whole
/// on every rank, the image part is split.
/// Fields, in order: split_dim, text_len_source, expected_dims, split_output.
///
///   SequenceParallelPartialInput(0, "txt_ids", 2).with_split_output()
struct SequenceParallelPartialInput {
  using TextLenSource = std::variant<std::string, int64_t>;
  int64_t split_dim = 0;
  /// Text length: a fixed int, or the name of a forward parameter whose value
  /// is an int or a tensor (its size along dim 0).
  TextLenSource text_len_source = int64_t{0};
  std::optional<int64_t> expected_dims;
  bool split_output = false;

  SequenceParallelPartialInput() = default;
  SequenceParallelPartialInput(int64_t dim, TextLenSource source,
                               std::optional<int64_t> dims = std::nullopt)
      : split_dim(dim), text_len_source(std::move(source)), expected_dims(dims) {}
  SequenceParallelPartialInput(int64_t dim, const char* source,
                               std::optional<int64_t> dims = std::nullopt)
      : SequenceParallelPartialInput(dim, TextLenSource(std::string(source)), dims) {}
  template <typename S, typename B, IfBool<B> = 0>
  SequenceParallelPartialInput(int64_t, S&&, B) = delete;

  SequenceParallelPartialInput& with_split_dim(int64_t d) {
    split_dim = d;
    return *this;
  }
  SequenceParallelPartialInput& with_text_len_source(TextLenSource s) {
    text_len_source = std::move(s);
    return *this;
  }
  SequenceParallelPartialInput& with_expected_dims(std::optional<int64_t> d) {
    expected_dims = d;
    return *this;
  }
  SequenceParallelPartialInput& with_split_output(bool on = true) {
    split_output = on;
    return *this;
  }
};

/// All-gather a module output along `gather_dim`. Only a tensor whose sequence
/// was split in this forward is gathered. Fields, in order: gather_dim,
/// expected_dims.
struct SequenceParallelOutput {
  int64_t gather_dim = 1;
  std::optional<int64_t> expected_dims;

  SequenceParallelOutput() = default;
  SequenceParallelOutput(int64_t dim) : gather_dim(dim) {}
  SequenceParallelOutput(int64_t dim, std::optional<int64_t> dims)
      : gather_dim(dim), expected_dims(dims) {}
  template <typename B, IfBool<B> = 0>
  SequenceParallelOutput(int64_t, B) = delete;

  SequenceParallelOutput& with_gather_dim(int64_t d) {
    gather_dim = d;
    return *this;
  }
  SequenceParallelOutput& with_expected_dims(std::optional<int64_t> d) {
    expected_dims = d;
    return *this;
  }
};

using AnySequenceParallelInput = std::variant<SequenceParallelInput, SequenceParallelPartialInput>;

/// Any spec; validate_sp_plan rejects one that stands where it does not belong
/// (an Output among inputs, an input among outputs).
using AnySpec =
    std::variant<SequenceParallelInput, SequenceParallelPartialInput, SequenceParallelOutput>;

/// One spec, or a list of specs (then the argument or output is a list of
/// tensors, one spec each; or, for outputs, the module returns several values).
struct SpecList {
  std::vector<AnySpec> items;
  bool is_list = false;
  SpecList() = default;
  SpecList(SequenceParallelInput s) : items{s} {}
  SpecList(SequenceParallelPartialInput s) : items{s} {}
  SpecList(SequenceParallelOutput s) : items{s} {}
  SpecList(std::vector<AnySpec> list) : items(std::move(list)), is_list(true) {}
};

/// A key of an input map: a forward parameter name, or an output index (only
/// with split_output).
using InputKey = std::variant<std::string, int64_t>;

/// What to split at one module, keyed by parameter name or output index.
struct SequenceParallelInputType : std::vector<std::pair<InputKey, SpecList>> {
  using std::vector<std::pair<InputKey, SpecList>>::vector;
  /// The module may go uncalled in a forward (an embedder some
  /// configurations do not use); see optional_entry().
  bool optional = false;
};
/// What to gather at one module.
struct SequenceParallelOutputType {
  SpecList specs;
  bool optional = false;
};

using PlanEntry = std::variant<SequenceParallelInputType, SequenceParallelOutputType>;

/// Module path ("" is the root; dotted as named_modules() names them; `*`
/// once for every child of a module list) to what happens there.
using SequenceParallelModelPlan = std::vector<std::pair<std::string, PlanEntry>>;

/// Builders that read like the reference's dict literals.
inline PlanEntry inputs(SequenceParallelInputType m) { return PlanEntry(std::move(m)); }
inline PlanEntry outputs(SpecList s) { return PlanEntry(SequenceParallelOutputType{std::move(s)}); }
inline PlanEntry outputs(std::vector<SequenceParallelOutput> list) {
  std::vector<AnySpec> items(list.begin(), list.end());
  return PlanEntry(SequenceParallelOutputType{SpecList(std::move(items))});
}
/// Marks an entry whose module may not be called in every forward (an
/// optional embedder): then its hooks not running is no error. Without it, a
/// planned module whose hooks did not run fails the forward, because a call
/// through ->forward() would silently skip its split or gather.
///
///   {"guidance_embedder", optional_entry(inputs({...}))}
PlanEntry optional_entry(PlanEntry entry);
bool is_optional(const PlanEntry& entry);

/// Checks a plan on its own (no model): throws std::invalid_argument naming
/// the offending key for empty or malformed module paths, duplicate keys, two
/// `*` in one path, int keys without split_output, split_output under a
/// parameter name, specs of the wrong kind, empty maps or lists, negative
/// expected_dims, split/gather dims outside expected_dims, bad text_len_source.
void validate_sp_plan(const SequenceParallelModelPlan& plan);

/// A module that declares its plan (the counterpart of `_sp_plan`).
class DeclaresSpPlan {
 public:
  virtual ~DeclaresSpPlan() = default;
  virtual SequenceParallelModelPlan sp_plan() const = 0;
};

/// The plan `model` declares, or nullopt.
std::optional<SequenceParallelModelPlan> get_sp_plan_from_model(const torch::nn::Module& model);

/// Human-readable forms, for errors and `spdit explain`.
std::string describe(const InputKey& key);
std::string describe(const AnySpec& spec);
std::string describe(const SequenceParallelModelPlan& plan);

}  // namespace spdit
