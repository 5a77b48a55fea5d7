#pragma once
// Modules whose calls run hooks, like Python's `Module.__call__`: arguments
// are bound to the forward signature by position or name, then pre-hooks,
// forward and post-hooks run.
#include <torch/nn/module.h>

#include <functional>
#include <string>
#include <vector>

#include "spdit/hooks/hook_registry.h"
#include "spdit/hooks/value.h"

namespace spdit {

/// Binds the call's arguments to `signature`, opens a ForwardContext when
/// none is open (the outermost call owns it), and runs the module's hooks
/// around `forward`. Unknown names, duplicates and surplus positionals are
/// errors naming the module.
Outputs invoke(torch::nn::Module& module, const std::vector<std::string>& signature,
               std::vector<Value> positional, std::vector<Kwarg> named,
               const std::function<Outputs(const BoundArgs&)>& forward);

/// Base of every module a plan can target by parameter name.
///
///   struct BlockImpl : spdit::HookableModule {
///     std::vector<std::string> signature() const override { return {"x", "rope"}; }
///    protected:
///     spdit::Outputs forward(const spdit::BoundArgs& a) override { ... }
///   };
///   auto y = block->call({x}, {{"rope", rope}}).tensor();
class HookableModule : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;
  ~HookableModule() override;

  /// Forward parameter names, in positional order.
  virtual std::vector<std::string> signature() const = 0;

  /// The only way in: binds, runs hooks, forward.
  Outputs call(std::vector<Value> positional, std::vector<Kwarg> named = {});
  Outputs operator()(std::vector<Value> positional, std::vector<Kwarg> named = {}) {
    return call(std::move(positional), std::move(named));
  }

 protected:
  /// The single-device computation. Protected so that nobody bypasses the hooks.
  virtual Outputs forward(const BoundArgs& args) = 0;
};

/// A plain LibTorch layer (Linear, LayerNorm, Identity, ...) called with its
/// hooks. The layer stays registered under its own name, so parameter names
/// and checkpoint keys do not change. Its signature is {"input"}.
///
///   Hooked<torch::nn::Linear> proj_out{register_module("proj_out", torch::nn::Linear(64, 16))};
///   auto y = proj_out(x);
template <typename Holder>
class Hooked {
 public:
  Hooked() = default;
  Hooked(Holder holder) : holder_(std::move(holder)) {
    HookRegistry::declare_signature(*holder_.ptr(), {"input"});
  }

  at::Tensor operator()(const at::Tensor& input) {
    return invoke(
               *holder_.ptr(), {"input"}, {Value(input)}, {},
               [this](const BoundArgs& a) { return Outputs(holder_->forward(a.tensor("input"))); })
        .tensor();
  }

  /// The layer itself, for its parameters and options. Call it through this
  /// wrapper: module()->forward(x) would skip the plan's hooks (and the end
  /// of the forward would fail, naming the module).
  Holder& module() { return holder_; }
  const Holder& module() const { return holder_; }

 private:
  Holder holder_{nullptr};
};

/// The parameter names of `module`: its own signature when it is a
/// HookableModule, else the declared one; nullopt when unknown.
std::optional<std::vector<std::string>> signature_of(const torch::nn::Module& module);

}  // namespace spdit
