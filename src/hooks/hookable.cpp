#include "spdit/hooks/hookable.h"

#include <map>
#include <mutex>
#include <new>
#include <stdexcept>

#include <c10/util/Exception.h>

#include "spdit/hooks/forward_context.h"
#include "spdit/runtime/error_message.h"

namespace spdit {
namespace {

struct Entry {
  // Guards against a module freed and another allocated at its address.
  std::weak_ptr<const torch::nn::Module> alive;
  bool tracked = false;
  std::vector<Hook> hooks;
  std::string label;
  std::optional<std::vector<std::string>> signature;
};

std::mutex g_mutex;
std::map<const torch::nn::Module*, Entry> g_table;

Entry& entry_locked(const torch::nn::Module& m) {
  auto it = g_table.find(&m);
  if (it != g_table.end() && it->second.tracked && it->second.alive.expired()) {
    g_table.erase(it);
    it = g_table.end();
  }
  if (it == g_table.end()) {
    Entry e;
    try {
      e.alive = m.shared_from_this();
      e.tracked = true;
    } catch (const std::bad_weak_ptr&) {
      // A module not owned by a shared_ptr (on the stack): its destructor,
      // or remove_sequence_parallel, cleans up.
    }
    it = g_table.emplace(&m, std::move(e)).first;
  }
  return it->second;
}

const Entry* find_locked(const torch::nn::Module& m) {
  auto it = g_table.find(&m);
  if (it == g_table.end()) return nullptr;
  if (it->second.tracked && it->second.alive.expired()) {
    g_table.erase(it);
    return nullptr;
  }
  return &it->second;
}

// An exception leaving the outermost call of a forward run under a plan
// carries the plan's account of the sequence (what was split, by which
// entry, which hooks have not run), so that a raw shape error from an
// unpatchify says why; LibTorch's backtrace is dropped. The type is kept.
[[noreturn]] void rethrow_with_diagnosis(const std::exception& e, const ForwardContext& ctx) {
  std::string msg = error_message(e);
  if (msg.find("state of this forward under the SP plan") == std::string::npos) {
    msg += "\n" + ctx.diagnosis();
  }
  if (dynamic_cast<const c10::Error*>(&e)) throw std::runtime_error(msg);
  if (dynamic_cast<const std::invalid_argument*>(&e)) throw std::invalid_argument(msg);
  if (dynamic_cast<const std::out_of_range*>(&e)) throw std::out_of_range(msg);
  if (dynamic_cast<const std::logic_error*>(&e)) throw std::logic_error(msg);
  throw std::runtime_error(msg);
}

}  // namespace

void HookRegistry::add(const torch::nn::Module& module, Hook hook) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& e = entry_locked(module);
  for (const auto& h : e.hooks) {
    if (h.name == hook.name) {
      throw std::invalid_argument("spdit: module '" + (e.label.empty() ? module.name() : e.label) +
                                  "' already has a hook named '" + hook.name + "'");
    }
  }
  e.hooks.push_back(std::move(hook));
}

bool HookRegistry::remove(const torch::nn::Module& module, const std::string& name) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_table.find(&module);
  if (it == g_table.end()) return false;
  auto& hooks = it->second.hooks;
  for (auto h = hooks.begin(); h != hooks.end(); ++h) {
    if (h->name == name) {
      hooks.erase(h);
      return true;
    }
  }
  return false;
}

std::vector<Hook> HookRegistry::hooks(const torch::nn::Module& module) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Entry* e = find_locked(module);
  return e ? e->hooks : std::vector<Hook>{};
}

std::vector<std::string> HookRegistry::names(const torch::nn::Module& module) {
  std::vector<std::string> out;
  for (const auto& h : hooks(module)) out.push_back(h.name);
  return out;
}

void HookRegistry::set_label(const torch::nn::Module& module, const std::string& label) {
  std::lock_guard<std::mutex> lock(g_mutex);
  entry_locked(module).label = label;
}

std::string HookRegistry::label(const torch::nn::Module& module) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    const Entry* e = find_locked(module);
    if (e && !e->label.empty()) return e->label;
  }
  return module.name();
}

void HookRegistry::declare_signature(const torch::nn::Module& module,
                                     std::vector<std::string> names) {
  std::lock_guard<std::mutex> lock(g_mutex);
  entry_locked(module).signature = std::move(names);
}

std::optional<std::vector<std::string>> HookRegistry::declared_signature(
    const torch::nn::Module& module) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Entry* e = find_locked(module);
  return e ? e->signature : std::nullopt;
}

void HookRegistry::forget(const torch::nn::Module& module) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_table.erase(&module);
}

Outputs invoke(torch::nn::Module& module, const std::vector<std::string>& signature,
               std::vector<Value> positional, std::vector<Kwarg> named,
               const std::function<Outputs(const BoundArgs&)>& forward) {
  auto hooks = HookRegistry::hooks(module);
  const std::string label = HookRegistry::label(module);
  if (positional.size() > signature.size()) {
    throw std::invalid_argument("spdit: module '" + label + "' takes " +
                                std::to_string(signature.size()) + " argument(s) but " +
                                std::to_string(positional.size()) + " were given by position");
  }
  std::vector<Value> values(signature.size());
  std::vector<bool> given(signature.size(), false);
  for (size_t i = 0; i < positional.size(); ++i) {
    values[i] = std::move(positional[i]);
    given[i] = true;
  }
  for (auto& kw : named) {
    size_t i = 0;
    while (i < signature.size() && signature[i] != kw.name) ++i;
    if (i == signature.size()) {
      std::string all;
      for (const auto& n : signature) all += (all.empty() ? "" : ", ") + n;
      throw std::invalid_argument("spdit: module '" + label + "' has no parameter '" + kw.name +
                                  "' (its forward takes: " + all + ")");
    }
    if (given[i]) {
      throw std::invalid_argument("spdit: module '" + label + "' got argument '" + kw.name +
                                  "' twice (by position and by name, or named twice)");
    }
    values[i] = std::move(kw.value);
    given[i] = true;
  }
  BoundArgs args(label, signature, std::move(values));
  ForwardScope scope;
  auto run = [&] {
    for (auto& h : hooks) {
      if (h.pre) h.pre(args);
    }
    Outputs out = forward(args);
    for (auto& h : hooks) {
      if (h.post) h.post(args, out);
    }
    return out;
  };
  if (!scope.owns()) return run();
  try {
    return run();
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    const ForwardContext* ctx = ForwardContext::current();
    if (!ctx || !ctx->config || ctx->planned.empty()) throw;
    rethrow_with_diagnosis(e, *ctx);
  }
}

HookableModule::~HookableModule() { HookRegistry::forget(*this); }

Outputs HookableModule::call(std::vector<Value> positional, std::vector<Kwarg> named) {
  return invoke(*this, signature(), std::move(positional), std::move(named),
                [this](const BoundArgs& a) { return forward(a); });
}

std::optional<std::vector<std::string>> signature_of(const torch::nn::Module& module) {
  if (auto* h = dynamic_cast<const HookableModule*>(&module)) return h->signature();
  return HookRegistry::declared_signature(module);
}

}  // namespace spdit
