#include "spdit/hooks/sequence_parallel.h"

#include <torch/nn/module.h>

#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "spdit/hooks/forward_context.h"
#include "spdit/hooks/hookable.h"
#include "split_gather.h"

namespace spdit {
namespace {

const char* kHookPrefix = "spdit.sp_plan:";
const char* kBeginHook = "spdit.sp_plan.begin";
const char* kCheckHook = "spdit.sp_plan.check";

struct Registered {
  const torch::nn::Module* module;
  std::string hook;
};

struct Applied {
  // A model freed without remove_sequence_parallel must not make another
  // model at the same address look applied.
  std::weak_ptr<const torch::nn::Module> alive;
  bool tracked = false;
  std::shared_ptr<const SequenceParallelConfig> config;
  std::vector<Registered> hooks;
};

std::mutex g_applied_mutex;
std::map<const torch::nn::Module*, Applied> g_applied;

std::string label_of(const std::string& path) { return path.empty() ? "\"\" (root)" : path; }

std::string where_arg(const std::string& path, const std::string& what) {
  return "module '" + label_of(path) + "', " + what;
}

torch::nn::Module* child_of(torch::nn::Module& parent, const std::string& name) {
  for (auto& c : parent.named_children()) {
    if (c.key() == name) return c.value().get();
  }
  return nullptr;
}

std::string children_list(torch::nn::Module& m) {
  std::string s;
  for (auto& c : m.named_children()) s += (s.empty() ? "" : ", ") + c.key();
  return s.empty() ? "none" : s;
}

// Walks a dotted path; `*` expands to every child of the module reached so far.
void resolve(torch::nn::Module& m, const std::string& walked, std::vector<std::string> segments,
             size_t i, const std::string& key,
             std::vector<std::pair<std::string, torch::nn::Module*>>& out) {
  if (i == segments.size()) {
    out.emplace_back(walked, &m);
    return;
  }
  const std::string& seg = segments[i];
  if (seg == "*") {
    auto children = m.named_children();
    if (children.is_empty()) {
      throw std::invalid_argument("spdit: sp_plan key \"" + key + "\": '*' at '" + walked +
                                  "' expands to nothing; that module has no children");
    }
    for (auto& c : children) {
      resolve(*c.value(), walked.empty() ? c.key() : walked + "." + c.key(), segments, i + 1, key,
              out);
    }
    return;
  }
  torch::nn::Module* c = child_of(m, seg);
  if (!c) {
    throw std::invalid_argument("spdit: sp_plan key \"" + key + "\" names no module: '" +
                                (walked.empty() ? std::string("the root") : walked) +
                                "' has no child '" + seg + "' (its children: " + children_list(m) +
                                ")");
  }
  resolve(*c, walked.empty() ? seg : walked + "." + seg, segments, i + 1, key, out);
}

std::vector<std::pair<std::string, torch::nn::Module*>> resolve_modules(torch::nn::Module& model,
                                                                        const std::string& key) {
  std::vector<std::pair<std::string, torch::nn::Module*>> out;
  if (key.empty()) {
    out.emplace_back("", &model);
    return out;
  }
  std::vector<std::string> segments;
  std::stringstream ss(key);
  for (std::string s; std::getline(ss, s, '.');) segments.push_back(s);
  resolve(model, "", segments, 0, key, out);
  return out;
}

std::string params_list(const std::vector<std::string>& sig) {
  std::string s;
  for (const auto& n : sig) s += (s.empty() ? "" : ", ") + n;
  return s;
}

bool has_param(const std::vector<std::string>& sig, const std::string& name) {
  return std::find(sig.begin(), sig.end(), name) != sig.end();
}

// A module can carry hooks only when it is called through spdit (a
// HookableModule, or a layer held in Hooked<>); every parameter name a plan
// entry uses must exist in its forward.
void check_against_module(const std::string& path, torch::nn::Module& m, const PlanEntry& entry) {
  auto sig = signature_of(m);
  if (!sig) {
    throw std::invalid_argument(
        "spdit: sp_plan module '" + label_of(path) + "' (" + m.name() +
        ") cannot carry hooks, so its " +
        (std::holds_alternative<SequenceParallelOutputType>(entry) ? "gather" : "split") +
        " would never run: derive it from spdit::HookableModule, or hold the layer in "
        "spdit::Hooked<> and call it through that");
  }
  auto* in = std::get_if<SequenceParallelInputType>(&entry);
  if (!in) return;
  auto need = [&](const std::string& name, const std::string& role) {
    if (!sig) {
      throw std::invalid_argument(
          "spdit: sp_plan " + where_arg(path, role + " '" + name + "'") +
          ": the module declares no forward signature; derive it from spdit::HookableModule or "
          "hold it in spdit::Hooked<> so that its arguments have names");
    }
    if (!has_param(*sig, name)) {
      throw std::invalid_argument("spdit: sp_plan " + where_arg(path, role + " '" + name + "'") +
                                  ": no such parameter; its forward takes: " + params_list(*sig));
    }
  };
  for (const auto& [key, specs] : *in) {
    if (auto* name = std::get_if<std::string>(&key)) need(*name, "parameter");
    for (const auto& s : specs.items) {
      if (auto* p = std::get_if<SequenceParallelPartialInput>(&s)) {
        if (auto* src = std::get_if<std::string>(&p->text_len_source))
          need(*src, "text_len_source");
      }
    }
  }
}

int64_t text_len_of(const SequenceParallelPartialInput& spec, const BoundArgs& args,
                    const std::string& where) {
  if (auto* n = std::get_if<int64_t>(&spec.text_len_source)) return *n;
  const std::string& name = std::get<std::string>(spec.text_len_source);
  const Value& v = args[name];
  if (v.is_int()) return v.to_int();
  if (v.is_tensor()) return v.tensor().size(0);
  throw std::invalid_argument("spdit: " + where + ": text_len_source '" + name +
                              "' should be an int or a tensor but is " + v.kind());
}

// Splits one value (a tensor or a list of tensors) per its specs.
Value split_value(const Value& v, const SpecList& specs, const BoundArgs& args,
                  const SequenceParallelConfig& cfg, const std::string& where) {
  auto& ctx = *ForwardContext::current();
  auto one = [&](const at::Tensor& t, const AnySpec& spec, const std::string& w) {
    if (auto* s = std::get_if<SequenceParallelInput>(&spec)) {
      return detail::split_input(ctx, cfg, t, *s, w);
    }
    const auto& p = std::get<SequenceParallelPartialInput>(spec);
    return detail::split_partial(ctx, cfg, t, p, text_len_of(p, args, w), w);
  };
  if (specs.is_list) {
    const auto& list = v.tensor_list(where + " (its spec is a list)");
    if (list.size() != specs.items.size()) {
      throw std::invalid_argument(
          "spdit: " + where + ": the plan has " + std::to_string(specs.items.size()) +
          " specs but the list holds " + std::to_string(list.size()) + " tensors");
    }
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < list.size(); ++i) {
      out.push_back(one(list[i], specs.items[i], where + "[" + std::to_string(i) + "]"));
    }
    return Value(out);
  }
  return Value(one(v.tensor(where), specs.items[0], where));
}

Hook make_input_hook(const std::string& path, const SequenceParallelInputType& map,
                     std::shared_ptr<const SequenceParallelConfig> cfg) {
  Hook h;
  h.name = kHookPrefix + path;
  auto mark = [path, cfg]() {
    auto* ctx = ForwardContext::current();
    ctx->config = cfg.get();
    ctx->fired_hooks.insert(path);
  };
  SequenceParallelInputType by_name, by_index;
  for (const auto& kv : map) {
    (std::holds_alternative<std::string>(kv.first) ? by_name : by_index).push_back(kv);
  }
  h.pre = [path, by_name, cfg, mark](BoundArgs& args) {
    mark();
    for (const auto& [key, specs] : by_name) {
      const std::string& name = std::get<std::string>(key);
      Value& v = args[name];
      if (v.is_none()) continue;  // absent arguments are skipped
      v = split_value(v, specs, args, *cfg, where_arg(path, "argument '" + name + "'"));
    }
  };
  if (!by_index.empty()) {
    h.post = [path, by_index, cfg](const BoundArgs& args, Outputs& out) {
      for (const auto& [key, specs] : by_index) {
        const auto i = static_cast<size_t>(std::get<int64_t>(key));
        const std::string where = where_arg(path, "output " + std::to_string(i));
        if (i >= out.size()) {
          throw std::invalid_argument("spdit: " + where + ": the module returned only " +
                                      std::to_string(out.size()) + " output(s)");
        }
        if (out[i].is_none()) continue;
        out[i] = split_value(out[i], specs, args, *cfg, where);
      }
    };
  }
  return h;
}

Hook make_output_hook(const std::string& path, const SequenceParallelOutputType& spec,
                      std::shared_ptr<const SequenceParallelConfig> cfg) {
  Hook h;
  h.name = kHookPrefix + path;
  h.post = [path, spec, cfg](const BoundArgs&, Outputs& out) {
    auto& ctx = *ForwardContext::current();
    ctx.config = cfg.get();
    ctx.fired_hooks.insert(path);
    const auto& items = spec.specs.items;
    if (out.size() != items.size()) {
      throw std::invalid_argument("spdit: " + where_arg(path, "outputs") + ": the plan gathers " +
                                  std::to_string(items.size()) +
                                  " output(s) but the module returned " +
                                  std::to_string(out.size()));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string where = where_arg(path, "output " + std::to_string(i));
      if (out[i].is_none()) continue;
      out[i] = Value(detail::gather_output(ctx, *cfg, out[i].tensor(where),
                                           std::get<SequenceParallelOutput>(items[i]), where));
    }
  };
  return h;
}

void check_forward_end(const ForwardContext& ctx) {
  std::string missing;
  for (const auto& [path, optional] : ctx.planned) {
    if (!optional && !ctx.fired_hooks.count(path)) {
      missing += (missing.empty() ? "" : ", ") + label_of(path);
    }
  }
  if (!missing.empty()) {
    throw std::runtime_error(
        "spdit: the SP plan's hooks on [" + missing +
        "] did not run in this forward. Either the module was not called in this forward "
        "(an optional module this configuration does not use: wrap its plan entry in "
        "spdit::optional_entry(...)), or it was called around its hooks (->forward()): call it "
        "through HookableModule::call or spdit::Hooked<>");
  }
  if (ctx.sp_active()) {
    throw std::runtime_error(
        "spdit: the forward ended with the sequence still split; the plan needs a "
        "SequenceParallelOutput where the output leaves the model\n" +
        ctx.diagnosis());
  }
  // Every split sequence must come back whole through a gather: a sequence
  // split and then, say, pooled or used as cross-attention context leaves
  // each rank with a result of its own rows only (and auto_pad's padding).
  auto ungathered = ctx.ungathered_splits();
  if (!ungathered.empty()) {
    std::string list;
    for (const auto& u : ungathered) list += "\n  " + u;
    throw std::runtime_error(
        "spdit: the plan split a sequence that no gather of this forward brought back whole:" +
        list +
        "\nEach rank's result would depend on its own rows only. Split only the sequence the "
        "model's output is made of (and tables of the same length, such as its RoPE), and gather "
        "it where it leaves the model; text used whole by attention, pooled or cross-attended, "
        "is never split\n" +
        ctx.diagnosis());
  }
  if (ctx.splits().empty() && !ctx.skipped().empty()) {
    static std::mutex mutex;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(mutex);
    if (warned.insert(ctx.skipped().front()).second) {
      std::string list;
      for (const auto& w : ctx.skipped()) list += "\n  " + w;
      std::cerr << "spdit: warning: the SP plan split nothing in this forward, because every split "
                   "was skipped by its expected_dims:"
                << list
                << "\nEvery rank computed the whole sequence (right, but not parallel). Check "
                   "expected_dims against the tensors' dims. (warned once)"
                << std::endl;
    }
  }
}

}  // namespace

std::vector<std::string> resolve_plan_path(torch::nn::Module& model, const std::string& key) {
  std::vector<std::string> out;
  for (auto& [path, m] : resolve_modules(model, key)) out.push_back(path);
  return out;
}

void copy_weights(const torch::nn::Module& from, torch::nn::Module& to) {
  at::NoGradGuard no_grad;
  auto copy = [](const auto& src, const auto& dst, const char* kind) {
    if (src.size() != dst.size()) {
      throw std::invalid_argument(
          "spdit: copy_weights: the models differ: " + std::to_string(src.size()) + " vs " +
          std::to_string(dst.size()) + " " + kind);
    }
    for (const auto& item : src) {
      const at::Tensor* d = dst.find(item.key());
      if (!d || d->sizes() != item.value().sizes()) {
        throw std::invalid_argument("spdit: copy_weights: " + std::string(kind) + " '" +
                                    item.key() +
                                    "' is missing or shaped differently in the second model");
      }
      const_cast<at::Tensor&>(*d).copy_(item.value());
    }
  };
  copy(from.named_parameters(), to.named_parameters(), "parameters");
  copy(from.named_buffers(), to.named_buffers(), "buffers");
}

bool is_sequence_parallel_applied(const torch::nn::Module& model) {
  std::lock_guard<std::mutex> lock(g_applied_mutex);
  auto it = g_applied.find(&model);
  if (it == g_applied.end()) return false;
  if (it->second.tracked && it->second.alive.expired()) {
    g_applied.erase(it);
    return false;
  }
  return true;
}

void apply_sequence_parallel(torch::nn::Module& model, const SequenceParallelConfig& config,
                             std::optional<SequenceParallelModelPlan> plan) {
  if (is_sequence_parallel_applied(model)) {
    throw std::logic_error(
        "spdit: apply_sequence_parallel: this model already has an SP plan applied; call "
        "remove_sequence_parallel first (applying twice would split twice)");
  }
  if (!plan) plan = get_sp_plan_from_model(model);
  if (!plan) {
    throw std::invalid_argument("spdit: apply_sequence_parallel: model '" + model.name() +
                                "' declares no sp_plan (derive from spdit::DeclaresSpPlan) and "
                                "none was passed");
  }
  validate_sp_plan(*plan);

  // Every check runs before the first hook is registered.
  struct Target {
    std::string path;
    torch::nn::Module* module;
    const PlanEntry* entry;
  };
  std::vector<Target> targets;
  for (const auto& [key, entry] : *plan) {
    for (auto& [path, m] : resolve_modules(model, key)) {
      check_against_module(path, *m, entry);
      for (const auto& name : HookRegistry::names(*m)) {
        if (name.rfind(kHookPrefix, 0) == 0) {
          throw std::logic_error("spdit: apply_sequence_parallel: module '" + label_of(path) +
                                 "' already carries SP hooks (from another model sharing it)");
        }
      }
      for (const auto& t : targets) {
        if (t.module == m) {
          throw std::invalid_argument("spdit: sp_plan keys \"" + t.path + "\" and \"" + path +
                                      "\" name the same module");
        }
      }
      targets.push_back({path, m, &entry});
    }
  }
  auto cfg = std::make_shared<SequenceParallelConfig>(config);
  if (!cfg->is_initialized()) cfg->setup(current_world());

  Applied applied;
  applied.config = cfg;
  try {
    applied.alive = model.shared_from_this();
    applied.tracked = true;
  } catch (const std::bad_weak_ptr&) {
  }
  auto add = [&](const torch::nn::Module& m, Hook h) {
    applied.hooks.push_back({&m, h.name});
    HookRegistry::add(m, std::move(h));
  };
  std::vector<std::pair<std::string, bool>> planned;
  for (const auto& t : targets) planned.emplace_back(t.path, is_optional(*t.entry));
  // A fresh record of what the plan does in this forward, for attention's
  // checks, the check at the end, and the diagnosis of an error.
  add(model, Hook{kBeginHook,
                  [cfg, planned](BoundArgs&) {
                    auto* ctx = ForwardContext::current();
                    ctx->reset_records();
                    ctx->planned = planned;
                    ctx->config = cfg.get();
                  },
                  nullptr});
  for (const auto& t : targets) {
    HookRegistry::set_label(*t.module, label_of(t.path));
    if (auto* in = std::get_if<SequenceParallelInputType>(t.entry)) {
      add(*t.module, make_input_hook(t.path, *in, cfg));
    } else {
      add(*t.module, make_output_hook(t.path, std::get<SequenceParallelOutputType>(*t.entry), cfg));
    }
  }
  // A planned module called around its hooks (->forward() instead of the
  // hooked call) would silently leave the sequence split or unsplit.
  add(model, Hook{kCheckHook, nullptr, [](const BoundArgs&, Outputs&) {
                    check_forward_end(*ForwardContext::current());
                  }});
  std::lock_guard<std::mutex> lock(g_applied_mutex);
  g_applied.emplace(&model, std::move(applied));
}

void remove_sequence_parallel(torch::nn::Module& model) {
  Applied applied;
  {
    std::lock_guard<std::mutex> lock(g_applied_mutex);
    auto it = g_applied.find(&model);
    if (it == g_applied.end()) return;
    applied = std::move(it->second);
    g_applied.erase(it);
  }
  for (const auto& r : applied.hooks) {
    HookRegistry::remove(*r.module, r.hook);
    if (r.module != &model || r.hook.rfind(kHookPrefix, 0) == 0)
      HookRegistry::set_label(*r.module, "");
  }
}

}  // namespace spdit
