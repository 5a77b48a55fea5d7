#pragma once
// `--check`: a run's result against the one-rank reference, printed and put
// in the JSON the same way by every command that runs a job.
#include <ATen/ATen.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

namespace spdit::cli {

/// Prints `parity: max_abs_err=... rel_err=... tol=... PASS|FAIL`, records it
/// in `json["parity"]`, and returns the exit code (1 on FAIL).
inline int report_parity(const at::Tensor& got, const at::Tensor& ref, double tol,
                         nlohmann::json& json) {
  const double err = (got.to(at::kFloat) - ref.to(at::kFloat)).abs().max().item<double>();
  const double rel = err / std::max(ref.to(at::kFloat).abs().max().item<double>(), 1e-30);
  const bool pass = rel <= tol;
  std::cout << "parity: max_abs_err=" << std::scientific << std::setprecision(3) << err
            << " rel_err=" << rel << " tol=" << tol << (pass ? " PASS" : " FAIL")
            << std::defaultfloat << std::endl;
  json["parity"] = {{"max_abs_err", err}, {"rel_err", rel}, {"tol", tol}, {"pass", pass}};
  return pass ? 0 : 1;
}

}  // namespace spdit::cli
