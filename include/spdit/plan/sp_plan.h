#pragma once
// The SP plan: plain data that says where a model's tensors are split across
// the sequence-parallel ranks and where they are gathered back. Names follow
// the reference (`sp_plan`) and diffusers' ContextParallelInput/Output.
//
//   SequenceParallelModelPlan plan = {
//       {"", inputs({{"hidden_states", SequenceParallelInput{1, 3}}})},
//       {"pos_embed", inputs({{0, SequenceParallelInput{0, 2, /*split_output=*/true}}})},
//       {"proj_out", outputs(SequenceParallelOutput{1, 3})},
//   };
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace torch::nn {
class Module;
}

namespace spdit {

/// Split a tensor along `split_dim` into P pieces; rank k keeps piece k.
struct SequenceParallelInput {
  int64_t split_dim = 1;
  /// When set and the tensor has another rank, the split is skipped (warned once).
  std::optional<int64_t> expected_dims;
  /// Split the module's output at this index instead of an input.
  bool split_output = false;
  /// Zero-pad split_dim up to a multiple of P; a key-padding mask is recorded
  /// and every later gather trims back to the original length.
  bool auto_pad = false;
};

/// A tensor laid out [text, image] along `split_dim`: the text part stays whole
/// on every rank, the image part is split.
struct SequenceParallelPartialInput {
  int64_t split_dim = 0;
  /// Text length: a fixed int, or the name of a forward parameter whose value
  /// is an int or a tensor (its size along dim 0).
  std::variant<std::string, int64_t> text_len_source = int64_t{0};
  std::optional<int64_t> expected_dims;
  bool split_output = false;
};

/// All-gather a module output along `gather_dim`.
struct SequenceParallelOutput {
  int64_t gather_dim = 1;
  std::optional<int64_t> expected_dims;
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
using SequenceParallelInputType = std::vector<std::pair<InputKey, SpecList>>;
/// What to gather at one module.
struct SequenceParallelOutputType {
  SpecList specs;
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
