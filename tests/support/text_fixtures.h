#pragma once
// The text fixtures (tests/fixtures/text), written by
// scripts/reference/text_encoders_reference.py, and the comparisons the
// text tests share.
#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace spdit::test {

inline std::string text_fixture(const std::string& name) {
  return std::string(SPDIT_FIXTURES) + "/text/" + name;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

/// max |got - want| / max |want|, in double.
inline double relative_error(const at::Tensor& got, const at::Tensor& want) {
  if (got.sizes() != want.sizes()) return 1e9;
  return (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() /
         want.to(at::kDouble).abs().max().item<double>();
}

}  // namespace spdit::test
