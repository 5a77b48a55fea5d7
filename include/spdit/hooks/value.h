#pragma once
// The values a hookable module is called with and returns: what Python passes
// through `__call__` (tensors, ints, floats, bools, None, lists of tensors).
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace spdit {

/// One argument or output value.
class Value {
 public:
  Value() = default;  // None
  Value(std::nullopt_t) {}
  Value(at::Tensor t) : v_(t.defined() ? Variant(std::move(t)) : Variant(std::monostate{})) {}
  Value(std::vector<at::Tensor> ts) : v_(std::move(ts)) {}
  Value(int v) : v_(static_cast<int64_t>(v)) {}
  Value(int64_t v) : v_(v) {}
  Value(double v) : v_(v) {}
  Value(bool v) : v_(v) {}

  bool is_none() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_tensor() const { return std::holds_alternative<at::Tensor>(v_); }
  bool is_tensor_list() const { return std::holds_alternative<std::vector<at::Tensor>>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_double() const { return std::holds_alternative<double>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }

  /// Accessors throw with `what` (e.g. "argument 'x' of module 'blocks.0'")
  /// and the actual kind when the value is of another kind.
  const at::Tensor& tensor(const std::string& what = "value") const;
  at::Tensor& tensor(const std::string& what = "value");
  const std::vector<at::Tensor>& tensor_list(const std::string& what = "value") const;
  std::vector<at::Tensor>& tensor_list(const std::string& what = "value");
  int64_t to_int(const std::string& what = "value") const;
  double to_double(const std::string& what = "value") const;
  bool to_bool(const std::string& what = "value") const;

  /// "None", "Tensor[2, 5, 8]", "int 3", ...
  std::string kind() const;

 private:
  using Variant =
      std::variant<std::monostate, at::Tensor, std::vector<at::Tensor>, int64_t, double, bool>;
  Variant v_;
};

/// A named argument at a call site: `{"encoder_hidden_states", ctx}`.
struct Kwarg {
  std::string name;
  Value value;
};

/// Arguments bound to a module's forward signature; absent ones are None.
class BoundArgs {
 public:
  BoundArgs(std::string module_name, std::vector<std::string> names, std::vector<Value> values)
      : module_(std::move(module_name)), names_(std::move(names)), values_(std::move(values)) {}

  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const;
  Value& operator[](const std::string& name);
  const Value& operator[](const std::string& name) const;
  /// A tensor that must be present.
  const at::Tensor& tensor(const std::string& name) const;
  /// A tensor, or an undefined one when the argument is None.
  at::Tensor optional_tensor(const std::string& name) const;
  const std::string& module_name() const { return module_; }

 private:
  size_t index_of(const std::string& name) const;
  std::string module_;
  std::vector<std::string> names_;
  std::vector<Value> values_;
};

/// One output, or a tuple of them.
class Outputs {
 public:
  Outputs() = default;
  Outputs(at::Tensor t) : values_{Value(std::move(t))} {}
  Outputs(std::vector<Value> values, bool is_tuple = true)
      : values_(std::move(values)), is_tuple_(is_tuple) {}

  size_t size() const { return values_.size(); }
  bool is_tuple() const { return is_tuple_; }
  Value& operator[](size_t i);
  const Value& operator[](size_t i) const;
  /// The single tensor output; throws when the module returned a tuple.
  const at::Tensor& tensor() const;

 private:
  std::vector<Value> values_;
  bool is_tuple_ = false;
};

}  // namespace spdit
