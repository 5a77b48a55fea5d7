#include "spdit/plan/sp_plan.h"

#include <torch/nn/module.h>

#include <set>
#include <sstream>
#include <stdexcept>

namespace spdit {
namespace {

[[noreturn]] void reject(const std::string& where, const std::string& what) {
  throw std::invalid_argument("spdit: invalid sp_plan at " + where + ": " + what);
}

std::string module_label(const std::string& path) {
  return path.empty() ? std::string("module \"\" (the root model)") : "module \"" + path + "\"";
}

void validate_path(const std::string& path) {
  if (path.empty()) return;
  int stars = 0;
  std::string segment;
  std::stringstream ss(path);
  while (std::getline(ss, segment, '.')) {
    if (segment.empty()) {
      reject(module_label(path),
             "empty path segment; paths are dotted names as "
             "named_modules() gives them, e.g. \"blocks.0.attn\"");
    }
    if (segment.find('*') != std::string::npos) {
      if (segment != "*") reject(module_label(path), "'*' must stand alone as a whole segment");
      ++stars;
    }
  }
  if (path.back() == '.') reject(module_label(path), "path ends with '.'");
  if (stars > 1) {
    reject(module_label(path), "more than one '*'; a path may expand one module list only");
  }
}

// Dims may be negative (counted from the end); with expected_dims known, the
// dim must address one of them.
void check_dim(const std::string& where, const char* field, int64_t dim,
               const std::optional<int64_t>& expected_dims) {
  if (!expected_dims) return;
  if (*expected_dims < 1) {
    reject(where, "expected_dims=" + std::to_string(*expected_dims) + " must be at least 1");
  }
  if (dim < -*expected_dims || dim >= *expected_dims) {
    reject(where, std::string(field) + "=" + std::to_string(dim) +
                      " is out of range for expected_dims=" + std::to_string(*expected_dims));
  }
}

void validate_input_spec(const std::string& where, const AnySpec& spec, bool int_key) {
  bool split_output = false;
  if (auto* s = std::get_if<SequenceParallelInput>(&spec)) {
    check_dim(where, "split_dim", s->split_dim, s->expected_dims);
    split_output = s->split_output;
  } else if (auto* p = std::get_if<SequenceParallelPartialInput>(&spec)) {
    check_dim(where, "split_dim", p->split_dim, p->expected_dims);
    split_output = p->split_output;
    if (auto* n = std::get_if<int64_t>(&p->text_len_source); n && *n < 0) {
      reject(where, "text_len_source=" + std::to_string(*n) + " must not be negative");
    }
    if (auto* name = std::get_if<std::string>(&p->text_len_source); name && name->empty()) {
      reject(where, "text_len_source is an empty parameter name");
    }
  } else {
    reject(where,
           "a SequenceParallelOutput stands in an input map; outputs are gathered with "
           "`\"path\": SequenceParallelOutput(...)`, not under a parameter or index");
  }
  if (int_key && !split_output) {
    reject(where, "an integer key names a module output, which needs split_output=true");
  }
  if (!int_key && split_output) {
    reject(where,
           "split_output=true needs an integer output index as its key, not a "
           "parameter name");
  }
}

}  // namespace

std::string describe(const InputKey& key) {
  if (auto* s = std::get_if<std::string>(&key)) return "\"" + *s + "\"";
  return std::to_string(std::get<int64_t>(key));
}

std::string describe(const AnySpec& spec) {
  std::ostringstream os;
  auto dims = [&](const std::optional<int64_t>& d) {
    if (d) os << ", expected_dims=" << *d;
  };
  if (auto* s = std::get_if<SequenceParallelInput>(&spec)) {
    os << "SequenceParallelInput(split_dim=" << s->split_dim;
    dims(s->expected_dims);
    if (s->split_output) os << ", split_output=True";
    if (s->auto_pad) os << ", auto_pad=True";
  } else if (auto* p = std::get_if<SequenceParallelPartialInput>(&spec)) {
    os << "SequenceParallelPartialInput(split_dim=" << p->split_dim << ", text_len_source=";
    if (auto* n = std::get_if<std::string>(&p->text_len_source))
      os << "\"" << *n << "\"";
    else
      os << std::get<int64_t>(p->text_len_source);
    dims(p->expected_dims);
    if (p->split_output) os << ", split_output=True";
  } else {
    auto& o = std::get<SequenceParallelOutput>(spec);
    os << "SequenceParallelOutput(gather_dim=" << o.gather_dim;
    dims(o.expected_dims);
  }
  os << ")";
  return os.str();
}

std::string describe(const SequenceParallelModelPlan& plan) {
  std::ostringstream os;
  auto list = [&](const SpecList& l) {
    if (!l.is_list) return describe(l.items.at(0));
    std::string s = "[";
    for (size_t i = 0; i < l.items.size(); ++i) s += (i ? ", " : "") + describe(l.items[i]);
    return s + "]";
  };
  for (const auto& [path, entry] : plan) {
    os << "\"" << path << "\":" << (is_optional(entry) ? " (optional)" : "");
    if (auto* in = std::get_if<SequenceParallelInputType>(&entry)) {
      os << "\n";
      for (const auto& [key, specs] : *in)
        os << "    " << describe(key) << ": " << list(specs) << "\n";
    } else {
      os << " " << list(std::get<SequenceParallelOutputType>(entry).specs) << "\n";
    }
  }
  return os.str();
}

void validate_sp_plan(const SequenceParallelModelPlan& plan) {
  if (plan.empty()) reject("the plan", "it is empty; declare at least one split and one gather");
  std::set<std::string> paths;
  for (const auto& [path, entry] : plan) {
    const std::string where = module_label(path);
    validate_path(path);
    if (!paths.insert(path).second) reject(where, "the module path appears twice");
    if (auto* in = std::get_if<SequenceParallelInputType>(&entry)) {
      if (in->empty()) reject(where, "the input map is empty");
      std::set<std::string> keys;
      for (const auto& [key, specs] : *in) {
        const std::string kwhere = where + ", key " + describe(key);
        if (!keys.insert(describe(key)).second) reject(kwhere, "the key appears twice");
        const bool int_key = std::holds_alternative<int64_t>(key);
        if (int_key && std::get<int64_t>(key) < 0) {
          reject(kwhere, "an output index must not be negative");
        }
        if (!int_key && std::get<std::string>(key).empty()) {
          reject(kwhere, "the parameter name is empty");
        }
        if (specs.items.empty()) reject(kwhere, "the spec list is empty");
        for (size_t i = 0; i < specs.items.size(); ++i) {
          validate_input_spec(specs.is_list ? kwhere + "[" + std::to_string(i) + "]" : kwhere,
                              specs.items[i], int_key);
        }
      }
    } else {
      const auto& out = std::get<SequenceParallelOutputType>(entry).specs;
      if (out.items.empty()) reject(where, "the output spec list is empty");
      for (size_t i = 0; i < out.items.size(); ++i) {
        const std::string owhere = out.is_list ? where + "[" + std::to_string(i) + "]" : where;
        auto* o = std::get_if<SequenceParallelOutput>(&out.items[i]);
        if (!o) {
          reject(owhere,
                 "an input spec stands where outputs are gathered; split inputs with "
                 "`\"path\": {\"param\": SequenceParallelInput(...)}`");
        }
        check_dim(owhere, "gather_dim", o->gather_dim, o->expected_dims);
      }
    }
  }
}

PlanEntry optional_entry(PlanEntry entry) {
  std::visit([](auto& e) { e.optional = true; }, entry);
  return entry;
}

bool is_optional(const PlanEntry& entry) {
  return std::visit([](const auto& e) { return e.optional; }, entry);
}

std::optional<SequenceParallelModelPlan> get_sp_plan_from_model(const torch::nn::Module& model) {
  if (auto* d = dynamic_cast<const DeclaresSpPlan*>(&model)) return d->sp_plan();
  return std::nullopt;
}

}  // namespace spdit
