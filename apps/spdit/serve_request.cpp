#include "serve_request.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

namespace spdit::cli {
namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_null()) return "null";
  if (v.is_array()) return "an array";
  return "an object";
}

[[noreturn]] void refuse(const std::string& what) { throw BadRequest(what); }

std::string text_field(const json& j, const char* name) {
  const auto& v = j.at(name);
  if (!v.is_string()) refuse(std::string("'") + name + "' must be a string, not " + type_name(v));
  return v.get<std::string>();
}

int64_t whole_field(const json& j, const char* name, int64_t lo, int64_t hi) {
  const auto& v = j.at(name);
  if (!v.is_number_integer() && !v.is_number_unsigned()) {
    refuse(std::string("'") + name + "' must be a whole number, not " + type_name(v));
  }
  // nlohmann holds a non-negative whole number as unsigned, a negative one as
  // signed.
  const bool outside = v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(hi) ||
                                                    v.get<uint64_t>() < static_cast<uint64_t>(lo)
                                              : v.get<int64_t>() < lo || v.get<int64_t>() > hi;
  if (outside) {
    refuse(std::string("'") + name + "' must be from " + std::to_string(lo) + " to " +
           std::to_string(hi) + ", not " + v.dump());
  }
  return v.get<int64_t>();
}

void parse_size(const std::string& size, const RequestLimits& l, ImageRequest& r) {
  static const std::regex form("([0-9]{1,6})x([0-9]{1,6})");
  std::smatch m;
  if (!std::regex_match(size, m, form))
    refuse("'size' must be WIDTHxHEIGHT in pixels (e.g. \"1024x1024\"), not '" + size + "'");
  r.width = std::stoll(m[1]);
  r.height = std::stoll(m[2]);
  for (int64_t side : {r.width, r.height}) {
    if (side < l.size_unit || side % l.size_unit != 0) {
      refuse("'size' " + size + ": each side must be a positive multiple of " +
             std::to_string(l.size_unit) + " pixels for this model (one 2x2 patch of latents)");
    }
    if (side > l.max_side) {
      refuse("'size' " + size + " is too big: this server makes at most " +
             std::to_string(l.max_side) + " pixels a side (its --max-size)");
    }
  }
  const int64_t tokens = (r.width / l.size_unit) * (r.height / l.size_unit);
  if (tokens < l.min_tokens) {
    refuse("'size' " + size + " gives " + std::to_string(tokens) +
           " image token(s), fewer than the " + std::to_string(l.min_tokens) +
           " ranks that share them: ask for a larger size");
  }
}

}  // namespace

ImageRequest parse_image_request(const std::string& body, const RequestLimits& l,
                                 uint64_t random_seed) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    refuse(std::string("the body is not JSON: ") + e.what());
  }
  if (!j.is_object()) refuse(std::string("the body must be a JSON object, not ") + type_name(j));
  static const std::set<std::string> known = {"prompt", "size",  "n",        "response_format",
                                              "seed",   "steps", "guidance", "negative_prompt",
                                              "model",  "user"};
  for (const auto& [key, value] : j.items()) {
    if (!known.count(key)) {
      refuse("unknown field '" + key +
             "'; the fields are prompt, size, n, response_format, seed, steps, "
             "guidance, negative_prompt, model, user");
    }
  }
  ImageRequest r;
  r.seed = random_seed;
  if (!j.contains("prompt")) refuse("'prompt' is missing: say what to draw");
  r.prompt = text_field(j, "prompt");
  if (r.prompt.empty()) refuse("'prompt' is empty: say what to draw");
  if (l.prompt_tokens) {
    const int64_t tokens = l.prompt_tokens(r.prompt);
    if (tokens > l.max_prompt_tokens) {
      refuse("'prompt' takes " + std::to_string(tokens) +
             " T5 tokens, over this model's limit of " + std::to_string(l.max_prompt_tokens) +
             ": shorten it");
    }
  }
  if (j.contains("negative_prompt") && !text_field(j, "negative_prompt").empty()) {
    // FLUX.1 is guidance-distilled: its pipeline runs no negative branch.
    refuse(
        "'negative_prompt' needs classifier-free guidance, which this "
        "model's pipeline (FLUX.1, guidance "
        "distilled) does not run: leave it out and steer with 'guidance'");
  }
  if (j.contains("model"))
    text_field(j, "model");  // OpenAI clients send it; this server has one model
  if (j.contains("user")) text_field(j, "user");
  if (j.contains("size"))
    parse_size(text_field(j, "size"), l, r);
  else
    parse_size(std::to_string(std::min<int64_t>(1024, l.max_side) / l.size_unit * l.size_unit) +
                   "x" +
                   std::to_string(std::min<int64_t>(1024, l.max_side) / l.size_unit * l.size_unit),
               l, r);
  if (j.contains("n")) r.n = static_cast<int>(whole_field(j, "n", 1, l.max_n));
  if (j.contains("response_format")) {
    r.response_format = text_field(j, "response_format");
    if (r.response_format != "b64_json" && r.response_format != "url") {
      refuse("'response_format' must be \"b64_json\" or \"url\", not '" + r.response_format + "'");
    }
  }
  if (j.contains("seed"))
    r.seed = static_cast<uint64_t>(whole_field(j, "seed", 0, (int64_t{1} << 53)));
  if (j.contains("steps")) r.steps = static_cast<int>(whole_field(j, "steps", 1, l.max_steps));
  if (j.contains("guidance")) {
    const auto& v = j.at("guidance");
    if (!v.is_number()) refuse(std::string("'guidance' must be a number, not ") + type_name(v));
    r.guidance = v.get<double>();
    if (!std::isfinite(r.guidance) || r.guidance < 0 || r.guidance > 100) {
      refuse("'guidance' must be from 0 to 100, not " + v.dump());
    }
  }
  return r;
}

std::string to_wire(const ImageRequest& r) {
  return json{{"prompt", r.prompt},
              {"width", r.width},
              {"height", r.height},
              {"n", r.n},
              {"response_format", r.response_format},
              {"seed", r.seed},
              {"steps", r.steps},
              {"guidance", r.guidance}}
      .dump();
}

ImageRequest image_request_from_wire(const std::string& bytes) {
  const auto j = json::parse(bytes);
  ImageRequest r;
  r.prompt = j.at("prompt");
  r.width = j.at("width");
  r.height = j.at("height");
  r.n = j.at("n");
  r.response_format = j.at("response_format");
  r.seed = j.at("seed");
  r.steps = j.at("steps");
  r.guidance = j.at("guidance");
  return r;
}

}  // namespace spdit::cli
