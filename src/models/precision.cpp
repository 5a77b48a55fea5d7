#include "spdit/models/precision.h"

#include <sstream>
#include <stdexcept>

namespace spdit::models {

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "half") return at::kHalf;
  if (name == "fp32" || name == "float32" || name == "float") return at::kFloat;
  throw std::invalid_argument("spdit: unknown dtype '" + name + "'; use bf16, fp16 or fp32");
}

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16:
      return "bf16";
    case at::kHalf:
      return "fp16";
    case at::kFloat:
      return "fp32";
    default:
      return c10::toString(dtype);
  }
}

void check_dtype_runs(at::ScalarType dtype, const at::Device& device) {
  if (!at::isFloatingType(dtype) || dtype == at::kDouble) {
    throw std::invalid_argument("spdit: a model cannot run in " + dtype_name(dtype) +
                                "; use bf16, fp16 or fp32");
  }
  // Probed rather than assumed: which dtypes a build can multiply depends on
  // its version and backends.
  try {
    auto a = at::ones({2, 2}, at::TensorOptions().dtype(dtype).device(device));
    (void)at::linear(a, a);
  } catch (const c10::Error&) {
    throw std::invalid_argument(
        "spdit: this LibTorch build cannot multiply " + dtype_name(dtype) + " matrices on " +
        device.str() + " (" +
        (device.is_cpu() ? "a CPU build has no fp16 matrix product" : "unsupported") +
        "); use --dtype bf16 (as fast, and fp32's range) or --dtype fp32");
  }
}

at::ScalarType parameter_dtype(const std::string& name, at::ScalarType dtype,
                               const std::vector<std::string>& keep_fp32) {
  if (dtype == at::kFloat || keep_fp32.empty()) return dtype;
  std::istringstream parts(name);
  for (std::string part; std::getline(parts, part, '.');) {
    for (const auto& keep : keep_fp32) {
      if (part == keep) return at::kFloat;
    }
  }
  return dtype;
}

void convert_parameters(torch::nn::Module& model, at::ScalarType dtype,
                        const std::vector<std::string>& keep_fp32) {
  at::NoGradGuard no_grad;
  auto convert = [&](const std::string& name, at::Tensor t) {
    if (!at::isFloatingType(t.scalar_type())) return;
    const auto want = parameter_dtype(name, dtype, keep_fp32);
    if (t.scalar_type() != want) t.set_data(t.to(want));
  };
  for (const auto& p : model.named_parameters(true)) convert(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) convert(b.key(), b.value());
}

// Measured by tests/precision_test.cpp on the three models at small size
// (random weights, unit-scale activations), then given a margin of 2-3x: bf16
// against fp32 at most 1.3e-2 (flux), SP against one rank at most 3.1e-3
// (about one bf16 step at the output's largest value). fp16 is not measured
// on a CPU build, which cannot run it; its figures are bf16's scaled by the 8x
// finer mantissa, unverified.
double tolerance_against_fp32(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return 0.0;
    case at::kBFloat16:
      return 3e-2;
    default:
      return 4e-3;
  }
}

double tolerance_against_one_rank(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return 1e-5;
    case at::kBFloat16:
      return 1e-2;
    default:
      return 2e-3;
  }
}

}  // namespace spdit::models
