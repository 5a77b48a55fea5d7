#include "serve_request.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

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

// Sets width and height from "WxH"; `latent_frames` multiplies the tokens
// (a video's latent frames, 1 for a picture).
void parse_size(const std::string& size, const RequestLimits& l, int64_t& width, int64_t& height,
                int64_t latent_frames = 1) {
  static const std::regex form("([0-9]{1,6})x([0-9]{1,6})");
  std::smatch m;
  if (!std::regex_match(size, m, form))
    refuse("'size' must be WIDTHxHEIGHT in pixels (e.g. \"1024x1024\"), not '" + size + "'");
  width = std::stoll(m[1]);
  height = std::stoll(m[2]);
  for (int64_t side : {width, height}) {
    if (side < l.size_unit || side % l.size_unit != 0) {
      refuse("'size' " + size + ": each side must be a positive multiple of " +
             std::to_string(l.size_unit) + " pixels for this model (one 2x2 patch of latents)");
    }
    if (side > l.max_side) {
      refuse("'size' " + size + " is too big: this server makes at most " +
             std::to_string(l.max_side) + " pixels a side (its --max-size)");
    }
  }
  const int64_t tokens = latent_frames * (width / l.size_unit) * (height / l.size_unit);
  if (tokens < l.min_tokens) {
    refuse("'size' " + size + " gives " + std::to_string(tokens) +
           " image token(s), fewer than the " + std::to_string(l.min_tokens) +
           " ranks that share them: ask for a larger size");
  }
}

std::string default_size(const RequestLimits& l, int64_t width, int64_t height) {
  auto side = [&](int64_t s) { return std::min(s, l.max_side) / l.size_unit * l.size_unit; };
  return std::to_string(side(width)) + "x" + std::to_string(side(height));
}

// The body as a JSON object whose fields are all `known` (listed in the
// message otherwise).
json object_with_fields(const std::string& body, const std::vector<std::string>& known) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    refuse(std::string("the body is not JSON: ") + e.what());
  }
  if (!j.is_object()) refuse(std::string("the body must be a JSON object, not ") + type_name(j));
  for (const auto& [key, value] : j.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      refuse("unknown field '" + key + "'; the fields are " + list);
    }
  }
  return j;
}

std::string prompt_field(const json& j, const char* what) {
  if (!j.contains("prompt")) refuse(std::string("'prompt' is missing: say what to ") + what);
  std::string p = text_field(j, "prompt");
  if (p.empty()) refuse(std::string("'prompt' is empty: say what to ") + what);
  return p;
}

std::string response_format_field(const json& j, const char* ext) {
  if (!j.contains("response_format")) return "b64_json";
  std::string f = text_field(j, "response_format");
  if (f != "b64_json" && f != "url") {
    refuse("'response_format' must be \"b64_json\" or \"url\" (GET /v1/files/<id>." +
           std::string(ext) + "), not '" + f + "'");
  }
  return f;
}

// A number in [lo, hi]; the message names the field and the range.
double number_field(const json& j, const char* name, double lo, double hi) {
  const auto& v = j.at(name);
  if (!v.is_number()) refuse(std::string("'") + name + "' must be a number, not " + type_name(v));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    std::ostringstream m;
    m << "'" << name << "' must be from " << lo << " to " << hi << ", not " << v.dump();
    refuse(m.str());
  }
  return x;
}

double guidance_field(const json& j) { return number_field(j, "guidance", 0, 100); }

}  // namespace

ImageRequest parse_image_request(const std::string& body, const RequestLimits& l,
                                 uint64_t random_seed) {
  if (l.makes_video) {
    throw WrongModel(
        "this server's model makes videos (Wan2.1): POST /v1/videos/generations "
        "(fields prompt, size, frames, fps, ...)");
  }
  const json j =
      object_with_fields(body, {"prompt", "size", "n", "response_format", "seed", "steps",
                                "guidance", "true_cfg_scale", "negative_prompt", "model", "user"});
  ImageRequest r;
  r.true_cfg_scale = l.default_true_cfg_scale;
  r.seed = random_seed;
  r.prompt = prompt_field(j, "draw");
  if (l.prompt_tokens) {
    const int64_t tokens = l.prompt_tokens(r.prompt);
    if (tokens > l.max_prompt_tokens) {
      refuse("'prompt' takes " + std::to_string(tokens) +
             " T5 tokens, over this model's limit of " + std::to_string(l.max_prompt_tokens) +
             ": shorten it");
    }
  }
  if (j.contains("true_cfg_scale")) r.true_cfg_scale = number_field(j, "true_cfg_scale", 0, 100);
  if (j.contains("negative_prompt")) r.negative_prompt = text_field(j, "negative_prompt");
  if (!r.negative_prompt.empty() && !(r.true_cfg_scale > 1)) {
    // FLUX.1 is guidance-distilled: the negative branch is true CFG's only.
    refuse(
        "'negative_prompt' steers only with true CFG, which this request does not run "
        "('true_cfg_scale' " +
        json(r.true_cfg_scale).dump() +
        "): give 'true_cfg_scale' above 1 (e.g. 4) with it, or leave it out and steer with "
        "'guidance'");
  }
  if (j.contains("model"))
    text_field(j, "model");  // OpenAI clients send it; this server has one model
  if (j.contains("user")) text_field(j, "user");
  parse_size(j.contains("size") ? text_field(j, "size")
                                : default_size(l, l.default_width, l.default_height),
             l, r.width, r.height);
  if (j.contains("n")) r.n = static_cast<int>(whole_field(j, "n", 1, l.max_n));
  r.response_format = response_format_field(j, "png");
  if (j.contains("seed"))
    r.seed = static_cast<uint64_t>(whole_field(j, "seed", 0, (int64_t{1} << 53)));
  if (j.contains("steps")) r.steps = static_cast<int>(whole_field(j, "steps", 1, l.max_steps));
  if (j.contains("guidance")) r.guidance = guidance_field(j);
  return r;
}

VideoRequest parse_video_request(const std::string& body, const RequestLimits& l,
                                 uint64_t random_seed) {
  if (!l.makes_video) {
    throw WrongModel(
        "this server's model makes images (FLUX.1): video generation needs a Wan2.1 model "
        "folder (spdit serve --model-dir Wan2.1-T2V-1.3B-Diffusers); ask this one at POST "
        "/v1/images/generations");
  }
  const json j =
      object_with_fields(body, {"prompt", "negative_prompt", "size", "frames", "fps",
                                "response_format", "seed", "steps", "guidance", "model", "user"});
  VideoRequest r;
  r.seed = random_seed;
  r.prompt = prompt_field(j, "film");
  if (j.contains("negative_prompt")) r.negative_prompt = text_field(j, "negative_prompt");
  if (j.contains("model")) text_field(j, "model");
  if (j.contains("user")) text_field(j, "user");
  if (j.contains("frames")) {
    r.frames = whole_field(j, "frames", 1, l.max_frames);
    if ((r.frames - 1) % 4 != 0) {
      // Wan's VAE makes one frame, then four per latent frame.
      const int64_t below = (r.frames - 1) / 4 * 4 + 1, above = below + 4;
      std::string nearest = std::to_string(r.frames - below <= above - r.frames ? below : above);
      if (r.frames - below == above - r.frames && above <= l.max_frames)
        nearest = std::to_string(below) + " or " + std::to_string(above);
      refuse("'frames' " + std::to_string(r.frames) +
             ": Wan's VAE makes 1 + 4k frames (1, 5, 9, ..., 81); the nearest is " + nearest);
    }
  } else {
    r.frames = std::min<int64_t>(81, (l.max_frames - 1) / 4 * 4 + 1);
  }
  parse_size(j.contains("size") ? text_field(j, "size") : default_size(l, 832, 480), l, r.width,
             r.height, 1 + (r.frames - 1) / 4);
  if (j.contains("fps")) r.fps = static_cast<int>(whole_field(j, "fps", 1, 120));
  r.response_format = response_format_field(j, "mp4");
  if (j.contains("seed"))
    r.seed = static_cast<uint64_t>(whole_field(j, "seed", 0, (int64_t{1} << 53)));
  if (j.contains("steps")) r.steps = static_cast<int>(whole_field(j, "steps", 1, l.max_steps));
  if (j.contains("guidance")) r.guidance = guidance_field(j);
  if (!r.negative_prompt.empty() && !(r.guidance > 1)) {
    refuse("'negative_prompt' steers only with classifier-free guidance: 'guidance' " +
           std::to_string(r.guidance) +
           " (<= 1) runs one branch; raise it or leave the "
           "negative prompt out");
  }
  return r;
}

// Every rank receives a request as JSON of all its fields; one definition
// per request kind keeps the two directions in step.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ImageRequest, prompt, width, height, n, response_format, seed,
                                   steps, guidance, true_cfg_scale, negative_prompt)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(VideoRequest, prompt, negative_prompt, width, height, frames,
                                   fps, response_format, seed, steps, guidance)

std::string to_wire(const ImageRequest& r) { return json(r).dump(); }

ImageRequest image_request_from_wire(const std::string& bytes) {
  return json::parse(bytes).get<ImageRequest>();
}

std::string to_wire(const VideoRequest& r) { return json(r).dump(); }

VideoRequest video_request_from_wire(const std::string& bytes) {
  return json::parse(bytes).get<VideoRequest>();
}

}  // namespace spdit::cli
