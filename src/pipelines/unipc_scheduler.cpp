#include "spdit/pipelines/unipc_scheduler.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace spdit::pipelines {
namespace {

[[noreturn]] void refuse(const std::string& source, const std::string& field,
                         const std::string& why) {
  throw std::runtime_error("spdit: " + source + ": " + field + " " + why +
                           "; spdit's UniPC scheduler implements Wan2.1's configuration "
                           "(flow_prediction, "
                           "use_flow_sigmas, predict_x0, final_sigmas_type zero)");
}

// diffusers' _sigma_to_alpha_sigma_t with use_flow_sigmas, and the log-SNR
// lambda = log(alpha) - log(sigma), on float32 scalars as diffusers computes
// them.
at::Tensor lambda_of(const at::Tensor& sigma) { return at::log(1 - sigma) - at::log(sigma); }

}  // namespace

UniPCConfig UniPCConfig::wan() { return UniPCConfig{}; }

UniPCConfig UniPCConfig::from_json(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error("spdit: " + source + " is not JSON: " + e.what());
  }
  UniPCConfig c;
  auto flag = [&](const char* key, bool fallback) {
    return j.contains(key) && !j[key].is_null() ? j[key].get<bool>() : fallback;
  };
  try {
    if (j.contains("_class_name") && j["_class_name"] != "UniPCMultistepScheduler") {
      refuse(source, "_class_name",
             "is " + j["_class_name"].dump() + ", not UniPCMultistepScheduler");
    }
    c.num_train_timesteps = j.value("num_train_timesteps", c.num_train_timesteps);
    c.flow_shift = j.value("flow_shift", 1.0);  // diffusers' default when the file has none
    c.solver_order = j.value("solver_order", c.solver_order);
    c.solver_type = j.value("solver_type", c.solver_type);
    c.lower_order_final = flag("lower_order_final", true);
    if (j.contains("disable_corrector") && j["disable_corrector"].is_array())
      c.disable_corrector = j["disable_corrector"].get<std::vector<int64_t>>();
    const std::string prediction = j.value("prediction_type", std::string("epsilon"));
    if (prediction != "flow_prediction")
      refuse(source, "prediction_type", "'" + prediction + "' is not supported");
    if (!flag("use_flow_sigmas", false))
      refuse(source, "use_flow_sigmas", "false is not supported");
    for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                            "use_dynamic_shifting", "thresholding", "rescale_betas_zero_snr"}) {
      if (flag(key, false)) refuse(source, key, "true is not supported");
    }
    if (!flag("predict_x0", true)) refuse(source, "predict_x0", "false is not supported");
    if (j.contains("solver_p") && !j["solver_p"].is_null())
      refuse(source, "solver_p", "is not supported");
    if (j.contains("shift_terminal") && !j["shift_terminal"].is_null())
      refuse(source, "shift_terminal", "is not supported");
    const std::string final_type = j.value("final_sigmas_type", std::string("zero"));
    if (final_type != "zero")
      refuse(source, "final_sigmas_type", "'" + final_type + "' is not supported");
    const std::string spacing = j.value("timestep_spacing", std::string("linspace"));
    if (spacing != "linspace")
      refuse(source, "timestep_spacing", "'" + spacing + "' is not supported");
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("spdit: " + source + ": a field has the wrong type: " + e.what());
  }
  // bh1's B(h) = -h is infinite at the final zero sigma of flow matching:
  // diffusers' last step is NaN there, so only bh2 is offered.
  if (c.solver_type != "bh2")
    refuse(source, "solver_type", "'" + c.solver_type + "' is not supported (bh2 is)");
  if (c.solver_order < 1 || c.solver_order > 3) refuse(source, "solver_order", "must be 1, 2 or 3");
  if (c.num_train_timesteps < 1 || !(c.flow_shift > 0))
    refuse(source, "num_train_timesteps / flow_shift", "must be positive");
  return c;
}

std::string UniPCConfig::to_json() const {
  nlohmann::ordered_json j = {{"_class_name", "UniPCMultistepScheduler"},
                              {"num_train_timesteps", num_train_timesteps},
                              {"prediction_type", "flow_prediction"},
                              {"use_flow_sigmas", true},
                              {"flow_shift", flow_shift},
                              {"solver_order", solver_order},
                              {"solver_type", solver_type},
                              {"predict_x0", true},
                              {"lower_order_final", lower_order_final},
                              {"disable_corrector", disable_corrector},
                              {"final_sigmas_type", "zero"},
                              {"timestep_spacing", "linspace"}};
  return j.dump(2) + "\n";
}

UniPCMultistepScheduler::UniPCMultistepScheduler(const UniPCConfig& config, int64_t steps)
    : config_(config) {
  if (config.solver_type != "bh2" || config.solver_order < 1 || config.solver_order > 3) {
    throw std::invalid_argument(
        "spdit: the UniPC scheduler takes solver_type "
        "bh2 and solver_order 1 to 3");
  }
  if (steps < 1) throw std::invalid_argument("spdit: the UniPC scheduler needs at least 1 step");
  // set_timesteps' flow branch in float64, as numpy: linspace(1, 1/T, steps +
  // 1)[:-1], shifted.
  const double t = static_cast<double>(config.num_train_timesteps);
  const double delta = (1.0 / t - 1.0) / static_cast<double>(steps);
  std::vector<double> sigmas(static_cast<size_t>(steps));
  for (int64_t i = 0; i < steps; ++i) {
    const double s = static_cast<double>(i) * delta + 1.0;
    sigmas[i] = config.flow_shift * s / (1 + (config.flow_shift - 1) * s);
  }
  // Keeps log(sigma) of the first steps' lambda finite, as diffusers does.
  if (std::fabs(sigmas[0] - 1) < 1e-6) sigmas[0] -= 1e-6;
  timesteps_ = at::empty({steps}, at::kLong);
  sigmas_ = at::zeros({steps + 1}, at::kFloat);
  for (int64_t i = 0; i < steps; ++i) {
    timesteps_[i] = static_cast<int64_t>(sigmas[i] * t);  // numpy's astype(int64): truncation
    sigmas_[i] = static_cast<float>(sigmas[i]);
  }
  model_outputs_.assign(static_cast<size_t>(config.solver_order), at::Tensor());
}

namespace {

// The B(h) coefficients both updates share: R (order x order) and b (order).
struct Coefficients {
  at::Tensor hh, h_phi_1, b_h, r, b;
};

Coefficients coefficients(const at::Tensor& h, const std::vector<at::Tensor>& rks_in,
                          int64_t order) {
  std::vector<at::Tensor> rks = rks_in;
  rks.push_back(at::ones({}, at::kFloat));
  const auto rk = at::stack(rks);
  Coefficients c;
  c.hh = -h;  // predict_x0
  c.h_phi_1 = at::expm1(c.hh);
  auto h_phi_k = c.h_phi_1 / c.hh - 1;
  int64_t factorial_i = 1;
  c.b_h = at::expm1(c.hh);  // bh2
  std::vector<at::Tensor> r, b;
  for (int64_t i = 1; i <= order; ++i) {
    r.push_back(at::pow(rk, i - 1));
    b.push_back(h_phi_k * factorial_i / c.b_h);
    factorial_i *= i + 1;
    h_phi_k = h_phi_k / c.hh - 1.0 / static_cast<double>(factorial_i);
  }
  c.r = at::stack(r);
  c.b = at::stack(b);
  return c;
}

}  // namespace

at::Tensor UniPCMultistepScheduler::predictor(const at::Tensor& x, int64_t order) const {
  const auto& m0 = model_outputs_.back();
  const auto sigma_t = sigmas_[step_index_ + 1], sigma_s0 = sigmas_[step_index_];
  const auto alpha_t = 1 - sigma_t;
  const auto lambda_s0 = lambda_of(sigma_s0);
  const auto h = lambda_of(sigma_t) - lambda_s0;
  std::vector<at::Tensor> rks, d1s;
  for (int64_t i = 1; i < order; ++i) {
    const auto& mi = model_outputs_[model_outputs_.size() - 1 - i];
    const auto rk = (lambda_of(sigmas_[step_index_ - i]) - lambda_s0) / h;
    rks.push_back(rk);
    d1s.push_back((mi - m0) / rk);
  }
  const auto c = coefficients(h, rks, order);
  auto x_t = sigma_t / sigma_s0 * x - alpha_t * c.h_phi_1 * m0;
  if (!d1s.empty()) {
    const auto rhos_p =
        order == 2 ? at::ones({1}, x.options()) * 0.5
                   : at::linalg_solve(c.r.slice(0, 0, -1).slice(1, 0, -1), c.b.slice(0, 0, -1))
                         .to(x.scalar_type());
    const auto pred_res = at::einsum("k,bkc...->bc...", {rhos_p, at::stack(d1s, 1)});
    x_t = x_t - alpha_t * c.b_h * pred_res;
  }
  return x_t.to(x.scalar_type());
}

at::Tensor UniPCMultistepScheduler::corrector(const at::Tensor& model_t, const at::Tensor& x,
                                              int64_t order) const {
  const auto& m0 = model_outputs_.back();
  const auto sigma_t = sigmas_[step_index_], sigma_s0 = sigmas_[step_index_ - 1];
  const auto alpha_t = 1 - sigma_t;
  const auto lambda_s0 = lambda_of(sigma_s0);
  const auto h = lambda_of(sigma_t) - lambda_s0;
  std::vector<at::Tensor> rks, d1s;
  for (int64_t i = 1; i < order; ++i) {
    const auto& mi = model_outputs_[model_outputs_.size() - 1 - i];
    const auto rk = (lambda_of(sigmas_[step_index_ - (i + 1)]) - lambda_s0) / h;
    rks.push_back(rk);
    d1s.push_back((mi - m0) / rk);
  }
  const auto c = coefficients(h, rks, order);
  const auto rhos_c = order == 1 ? at::ones({1}, x.options()) * 0.5
                                 : at::linalg_solve(c.r, c.b).to(x.scalar_type());
  const auto x_t_ = sigma_t / sigma_s0 * x - alpha_t * c.h_phi_1 * m0;
  const auto d1_t = model_t - m0;
  auto correction = rhos_c[-1] * d1_t;
  if (!d1s.empty()) {
    correction =
        at::einsum("k,bkc...->bc...", {rhos_c.slice(0, 0, -1), at::stack(d1s, 1)}) + correction;
  }
  return (x_t_ - alpha_t * c.b_h * correction).to(x.scalar_type());
}

at::Tensor UniPCMultistepScheduler::step(const at::Tensor& model_output,
                                         const at::Tensor& sample_in) {
  at::NoGradGuard no_grad;
  if (step_index_ >= steps()) {
    throw std::logic_error("spdit: UniPC step " + std::to_string(step_index_ + 1) + " of a " +
                           std::to_string(steps()) + "-step schedule");
  }
  if (model_output.sizes() != sample_in.sizes()) {
    throw std::invalid_argument("spdit: UniPC step: the model output " +
                                std::string(c10::str(model_output.sizes())) + " and the sample " +
                                std::string(c10::str(sample_in.sizes())) + " differ in shape");
  }
  auto sample = sample_in;
  bool corrector_off = false;
  for (int64_t d : config_.disable_corrector) corrector_off |= d == step_index_ - 1;
  // convert_model_output: the data prediction x0 = x - sigma * v.
  const auto converted = sample - sigmas_[step_index_] * model_output;
  if (step_index_ > 0 && !corrector_off && last_sample_.defined()) {
    sample = corrector(converted, last_sample_, this_order_);
  }
  model_outputs_.erase(model_outputs_.begin());
  model_outputs_.push_back(converted);
  const int64_t order = config_.lower_order_final
                            ? std::min(config_.solver_order, steps() - step_index_)
                            : config_.solver_order;
  this_order_ =
      std::min(order, lower_order_nums_ + 1);  // warm-up: the first steps have fewer outputs
  last_sample_ = sample;
  auto prev = predictor(sample, this_order_);
  if (lower_order_nums_ < config_.solver_order) ++lower_order_nums_;
  ++step_index_;
  return prev;
}

}  // namespace spdit::pipelines
