#include "spdit/pipelines/flow_match_scheduler.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace spdit::pipelines {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("spdit: " + source + ": " + what);
}

template <typename T>
T field(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  const bool ok = std::is_same_v<T, bool> ? v.is_boolean()
                  : std::is_integral_v<T> ? v.is_number_integer()
                                          : v.is_number();
  if (!ok) fail(source, std::string("field '") + key + "' has the wrong type: " + v.dump());
  return v.get<T>();
}

}  // namespace

FlowMatchEulerConfig FlowMatchEulerConfig::flux_dev() {
  FlowMatchEulerConfig c;
  c.shift = 3.0;
  c.use_dynamic_shifting = true;
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::flux_schnell() { return FlowMatchEulerConfig{}; }

FlowMatchEulerConfig FlowMatchEulerConfig::qwen_image() {
  FlowMatchEulerConfig c;
  c.use_dynamic_shifting = true;
  c.max_shift = 0.9;
  c.max_image_seq_len = 8192;
  c.shift_terminal = 0.02;
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::from_json(const std::string& text,
                                                     const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(source, "should hold a JSON object");
  if (j.contains("_class_name") && j["_class_name"] != "FlowMatchEulerDiscreteScheduler") {
    fail(source, "configures " + j["_class_name"].dump() +
                     ", not FlowMatchEulerDiscreteScheduler (FLUX.1's)");
  }
  // What FLUX.1 never sets; silently ignoring one would give other sigmas.
  for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                          "invert_sigmas", "stochastic_sampling", "use_flow_sigmas"}) {
    if (field<bool>(j, key, false, source))
      fail(source, std::string("sets '") + key + "', which spdit does not implement");
  }
  if (j.contains("time_shift_type") && j["time_shift_type"] != "exponential") {
    fail(source, "time_shift_type " + j["time_shift_type"].dump() +
                     " is not implemented (only \"exponential\")");
  }
  FlowMatchEulerConfig c;
  c.num_train_timesteps = field<int64_t>(j, "num_train_timesteps", c.num_train_timesteps, source);
  c.shift = field<double>(j, "shift", c.shift, source);
  c.use_dynamic_shifting = field<bool>(j, "use_dynamic_shifting", c.use_dynamic_shifting, source);
  c.base_shift = field<double>(j, "base_shift", c.base_shift, source);
  c.max_shift = field<double>(j, "max_shift", c.max_shift, source);
  c.base_image_seq_len = field<int64_t>(j, "base_image_seq_len", c.base_image_seq_len, source);
  c.max_image_seq_len = field<int64_t>(j, "max_image_seq_len", c.max_image_seq_len, source);
  if (j.contains("shift_terminal") && !j["shift_terminal"].is_null())
    c.shift_terminal = field<double>(j, "shift_terminal", 0.0, source);
  if (c.shift_terminal < 0 || c.shift_terminal >= 1)
    fail(source, "shift_terminal must be in [0, 1)");
  if (c.num_train_timesteps <= 0) fail(source, "num_train_timesteps must be positive");
  if (!(c.shift > 0)) fail(source, "shift must be positive");
  if (c.max_image_seq_len == c.base_image_seq_len) {
    fail(source,
         "max_image_seq_len equals base_image_seq_len; the shift's slope would divide by zero");
  }
  return c;
}

FlowMatchEulerConfig FlowMatchEulerConfig::from_model_dir(const std::string& model_dir) {
  const std::string path = model_dir + "/scheduler/scheduler_config.json";
  std::ifstream f(path);
  if (!f) {
    throw std::runtime_error("spdit: cannot read '" + path +
                             "'; a diffusers FLUX.1 folder holds the scheduler's "
                             "config there (FlowMatchEulerDiscreteScheduler)");
  }
  std::stringstream text;
  text << f.rdbuf();
  return from_json(text.str(), path);
}

std::string FlowMatchEulerConfig::to_json() const {
  nlohmann::json j = {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                      {"base_image_seq_len", base_image_seq_len},
                      {"base_shift", base_shift},
                      {"max_image_seq_len", max_image_seq_len},
                      {"max_shift", max_shift},
                      {"num_train_timesteps", num_train_timesteps},
                      {"shift", shift},
                      {"use_dynamic_shifting", use_dynamic_shifting}};
  if (shift_terminal > 0) j["shift_terminal"] = shift_terminal;
  return j.dump(2) + "\n";
}

double flux_time_shift_mu(int64_t image_seq_len, const FlowMatchEulerConfig& c) {
  const double m = (c.max_shift - c.base_shift) /
                   static_cast<double>(c.max_image_seq_len - c.base_image_seq_len);
  const double b = c.base_shift - m * static_cast<double>(c.base_image_seq_len);
  return static_cast<double>(image_seq_len) * m + b;
}

FlowMatchEulerScheduler::FlowMatchEulerScheduler(const FlowMatchEulerConfig& c, int64_t steps,
                                                 int64_t image_seq_len) {
  if (steps < 1)
    throw std::invalid_argument("spdit: the scheduler needs at least 1 step, not " +
                                std::to_string(steps));
  if (image_seq_len < 1) {
    throw std::invalid_argument(
        "spdit: the scheduler needs the image's token count (at least 1), not " +
        std::to_string(image_seq_len));
  }
  mu_ = flux_time_shift_mu(image_seq_len, c);
  // diffusers computes in numpy float32 from here: linspace (float64) cast to
  // float32, then every shift operation in float32 with the Python scalars
  // (exp(mu), shift) cast to float32. The same arithmetic, in the same
  // order, gives the same bits.
  const float em = static_cast<float>(std::exp(mu_));
  const float shift = static_cast<float>(c.shift);
  std::vector<float> sigmas(steps + 1, 0.0f), timesteps(steps);
  for (int64_t i = 0; i < steps; ++i) {
    // numpy's linspace: start + i * step, the last point exactly `stop`.
    const double stop = 1.0 / static_cast<double>(steps);
    const double lin =
        i == steps - 1 && steps > 1
            ? stop
            : 1.0 + static_cast<double>(i) *
                        ((stop - 1.0) / static_cast<double>(std::max<int64_t>(steps - 1, 1)));
    const float s = static_cast<float>(lin);
    float shifted;
    if (c.use_dynamic_shifting) {
      shifted = em / (em + (1.0f / s - 1.0f));  // exponential time shift, sigma = 1
    } else {
      shifted = shift * s / (1.0f + (shift - 1.0f) * s);
    }
    sigmas[i] = shifted;
  }
  if (c.shift_terminal > 0) {
    if (steps == 1) {
      throw std::invalid_argument(
          "spdit: shift_terminal with 1 step stretches a single sigma of 1 (0 / 0 in "
          "diffusers, NaN): use at least 2 steps");
    }
    // stretch_shift_to_terminal in numpy: the scale factor is a float64
    // scalar (float32 / Python float), the array arithmetic float32.
    const double scale = static_cast<double>(1.0f - sigmas[steps - 1]) / (1.0 - c.shift_terminal);
    for (int64_t i = 0; i < steps; ++i)
      sigmas[i] = 1.0f - (1.0f - sigmas[i]) / static_cast<float>(scale);
  }
  for (int64_t i = 0; i < steps; ++i)
    timesteps[i] = sigmas[i] * static_cast<float>(c.num_train_timesteps);
  sigmas_ = at::tensor(sigmas, at::kFloat);
  timesteps_ = at::tensor(timesteps, at::kFloat);
}

at::Tensor FlowMatchEulerScheduler::step(const at::Tensor& model_output, int64_t index,
                                         const at::Tensor& sample) const {
  if (index < 0 || index >= steps()) {
    throw std::out_of_range("spdit: scheduler step " + std::to_string(index) + " of a " +
                            std::to_string(steps()) + "-step schedule");
  }
  if (!model_output.sizes().equals(sample.sizes())) {
    throw std::invalid_argument("spdit: scheduler step: the model output " +
                                c10::str(model_output.sizes()) + " and the sample " +
                                c10::str(sample.sizes()) + " differ in shape");
  }
  const float* s = sigmas_.data_ptr<float>();
  const float dt = s[index + 1] - s[index];
  // As diffusers: dt (a 0-d float32 tensor) times the output stays in the
  // output's dtype (bf16 for FLUX.1), the sum is float32.
  return (sample.to(at::kFloat) + model_output * static_cast<double>(dt))
      .to(model_output.scalar_type());
}

}  // namespace spdit::pipelines
