#pragma once
// Forward hooks for any torch::nn::Module. LibTorch C++ has none, so spdit
// keeps them in a side table keyed by the module object (not its type): a
// plain Linear can carry hooks as well as a model's own blocks.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "spdit/hooks/value.h"

namespace torch::nn {
class Module;
}

namespace spdit {

/// Runs before forward and may replace arguments.
using PreHook = std::function<void(BoundArgs& args)>;
/// Runs after forward and may replace outputs.
using PostHook = std::function<void(const BoundArgs& args, Outputs& outputs)>;

/// A named pair of hooks; either may be empty.
struct Hook {
  std::string name;
  PreHook pre;
  PostHook post;
};

/// The side table. Thread-safe; hooks run outside its lock.
///
///   HookRegistry::add(*model->proj_out.ptr(), {"log", nullptr, log_outputs});
///   HookRegistry::remove(*model->proj_out.ptr(), "log");
class HookRegistry {
 public:
  /// Adds a hook; a name already on that module is an error.
  static void add(const torch::nn::Module& module, Hook hook);
  /// Removes by name; false when absent.
  static bool remove(const torch::nn::Module& module, const std::string& name);
  static std::vector<Hook> hooks(const torch::nn::Module& module);
  static std::vector<std::string> names(const torch::nn::Module& module);

  /// The module's path in the model it was hooked through ("blocks.0.attn"),
  /// for error messages; its class name when none was set.
  static void set_label(const torch::nn::Module& module, const std::string& label);
  static std::string label(const torch::nn::Module& module);

  /// The forward parameter names of a module that is not a HookableModule
  /// (Hooked<> declares {"input"} for plain layers).
  static void declare_signature(const torch::nn::Module& module, std::vector<std::string> names);
  static std::optional<std::vector<std::string>> declared_signature(
      const torch::nn::Module& module);

  /// Drops everything kept for the module.
  static void forget(const torch::nn::Module& module);
};

}  // namespace spdit
