#pragma once
// `spdit serve`: what a client may ask for, checked before it reaches the
// ranks, and its form on the wire between them.
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace spdit::cli {

/// A request the server refuses (HTTP 400); the message says what and how to
/// fix it.
struct BadRequest : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// POST /v1/images/generations, OpenAI's images API plus our fields.
struct ImageRequest {
  std::string prompt;
  int64_t width = 1024, height = 1024;       // "size": "WxH"
  int n = 1;                                 // pictures, seeds seed, seed + 1, ...
  std::string response_format = "b64_json";  // or "url" (GET /v1/files/<id>.png)
  uint64_t seed = 0;
  int steps = 0;          // 0: the model's default
  double guidance = 3.5;  // FLUX.1-dev's embedded guidance
};

/// What this server's model and flags allow.
struct RequestLimits {
  int64_t size_unit = 16;   // sides are multiples of this (2 x the VAE's scale factor)
  int64_t max_side = 1024;  // --max-size
  int64_t min_tokens = 1;   // the SP degree: every rank needs a token
  int max_n = 4;            // --max-n
  int max_steps = 100;
  int64_t max_prompt_tokens = 512;  // T5's limit (dev 512, schnell 256)
  /// T5 tokens a prompt takes; refusing a long prompt beats cutting it
  /// silently.
  std::function<int64_t(const std::string&)> prompt_tokens;
};

/// Parses and checks a request body; throws BadRequest naming the field.
/// Without "seed", `random_seed` gives one (said in the answer).
ImageRequest parse_image_request(const std::string& body, const RequestLimits& limits,
                                 uint64_t random_seed);

/// The request as bytes for the ranks, and back.
std::string to_wire(const ImageRequest& r);
ImageRequest image_request_from_wire(const std::string& bytes);

}  // namespace spdit::cli
