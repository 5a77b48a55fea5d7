#include "spdit/hooks/value.h"

#include <sstream>
#include <stdexcept>

namespace spdit {
namespace {

[[noreturn]] void wrong_kind(const std::string& what, const char* wanted, const Value& v) {
  throw std::invalid_argument("spdit: " + what + " should be " + wanted + " but is " + v.kind());
}

}  // namespace

const at::Tensor& Value::tensor(const std::string& what) const {
  if (!is_tensor()) wrong_kind(what, "a tensor", *this);
  return std::get<at::Tensor>(v_);
}
at::Tensor& Value::tensor(const std::string& what) {
  if (!is_tensor()) wrong_kind(what, "a tensor", *this);
  return std::get<at::Tensor>(v_);
}
const std::vector<at::Tensor>& Value::tensor_list(const std::string& what) const {
  if (!is_tensor_list()) wrong_kind(what, "a list of tensors", *this);
  return std::get<std::vector<at::Tensor>>(v_);
}
std::vector<at::Tensor>& Value::tensor_list(const std::string& what) {
  if (!is_tensor_list()) wrong_kind(what, "a list of tensors", *this);
  return std::get<std::vector<at::Tensor>>(v_);
}
int64_t Value::to_int(const std::string& what) const {
  if (!is_int()) wrong_kind(what, "an int", *this);
  return std::get<int64_t>(v_);
}
double Value::to_double(const std::string& what) const {
  if (is_int()) return static_cast<double>(std::get<int64_t>(v_));
  if (!is_double()) wrong_kind(what, "a float", *this);
  return std::get<double>(v_);
}
bool Value::to_bool(const std::string& what) const {
  if (!is_bool()) wrong_kind(what, "a bool", *this);
  return std::get<bool>(v_);
}

std::string Value::kind() const {
  std::ostringstream os;
  if (is_none()) {
    os << "None";
  } else if (is_tensor()) {
    os << "Tensor" << std::get<at::Tensor>(v_).sizes();
  } else if (is_tensor_list()) {
    os << "list of " << std::get<std::vector<at::Tensor>>(v_).size() << " tensors";
  } else if (is_int()) {
    os << "int " << std::get<int64_t>(v_);
  } else if (is_double()) {
    os << "float " << std::get<double>(v_);
  } else {
    os << "bool " << (std::get<bool>(v_) ? "True" : "False");
  }
  return os.str();
}

size_t BoundArgs::index_of(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return i;
  }
  std::string all;
  for (const auto& n : names_) all += (all.empty() ? "" : ", ") + n;
  throw std::invalid_argument("spdit: module '" + module_ + "' has no parameter '" + name +
                              "' (its forward takes: " + all + ")");
}

bool BoundArgs::has(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return !values_[i].is_none();
  }
  return false;
}

Value& BoundArgs::operator[](const std::string& name) { return values_[index_of(name)]; }
const Value& BoundArgs::operator[](const std::string& name) const {
  return values_[index_of(name)];
}

const at::Tensor& BoundArgs::tensor(const std::string& name) const {
  const Value& v = (*this)[name];
  if (v.is_none()) {
    throw std::invalid_argument("spdit: module '" + module_ + "' needs argument '" + name +
                                "', which was not given");
  }
  return v.tensor("argument '" + name + "' of module '" + module_ + "'");
}

at::Tensor BoundArgs::optional_tensor(const std::string& name) const {
  const Value& v = (*this)[name];
  if (v.is_none()) return at::Tensor();
  return v.tensor("argument '" + name + "' of module '" + module_ + "'");
}

Value& Outputs::operator[](size_t i) {
  if (i >= values_.size()) {
    throw std::out_of_range("spdit: output index " + std::to_string(i) + " of a module with " +
                            std::to_string(values_.size()) + " output(s)");
  }
  return values_[i];
}
const Value& Outputs::operator[](size_t i) const { return const_cast<Outputs&>(*this)[i]; }

const at::Tensor& Outputs::tensor() const {
  if (values_.size() != 1) {
    throw std::invalid_argument("spdit: expected one output but the module returned " +
                                std::to_string(values_.size()));
  }
  return values_[0].tensor("the module's output");
}

}  // namespace spdit
