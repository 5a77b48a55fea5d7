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

/// A request for what this server's model does not make (a video from
/// FLUX.1, a picture from Wan2.1): HTTP 501, naming the endpoint that works.
struct WrongModel : std::invalid_argument {
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
  // True CFG (diffusers' true_cfg_scale): above 1, each step also runs the
  // negative prompt. Default: the folder's (RequestLimits), else 1.
  double true_cfg_scale = 1.0;
  std::string negative_prompt;
};

/// POST /v1/videos/generations (a Wan2.1 model): our fields, in the images
/// API's style.
struct VideoRequest {
  std::string prompt, negative_prompt;
  int64_t width = 832, height = 480;         // "size": "WxH"
  int64_t frames = 81;                       // 1 + 4k
  int fps = 16;                              // the MP4's frame rate
  std::string response_format = "b64_json";  // or "url" (GET /v1/files/<id>.mp4)
  uint64_t seed = 0;
  int steps = 0;          // 0: Wan's 50
  double guidance = 5.0;  // classifier-free guidance; <= 1: one branch, no negative prompt
};

/// What this server's model and flags allow.
struct RequestLimits {
  bool makes_video = false;  // a Wan2.1 folder: the video endpoint, not the image one
  int64_t size_unit = 16;    // sides are multiples of this (2 x the VAE's scale factor)
  int64_t max_side = 1024;   // --max-size
  int64_t min_tokens = 1;    // the SP degree: every rank needs a token
  int max_n = 4;             // --max-n
  int max_steps = 100;
  int64_t max_prompt_tokens = 512;  // T5's limit (dev 512, schnell 256)
  int64_t max_frames = 81;          // --max-frames (video)
  // Where a request says nothing: the size and true CFG scale (images) a
  // folder's _spdit_run_defaults name, else the published defaults.
  int64_t default_width = 1024, default_height = 1024;
  double default_true_cfg_scale = 1.0;
  /// T5 tokens a prompt takes; refusing a long prompt beats cutting it
  /// silently.
  std::function<int64_t(const std::string&)> prompt_tokens;
};

/// Parses and checks a request body; throws BadRequest naming the field.
/// Without "seed", `random_seed` gives one (said in the answer).
ImageRequest parse_image_request(const std::string& body, const RequestLimits& limits,
                                 uint64_t random_seed);

/// The same for a video request; a frame count that is not 1 + 4k is
/// refused naming the nearest that are.
VideoRequest parse_video_request(const std::string& body, const RequestLimits& limits,
                                 uint64_t random_seed);

/// The request as bytes for the ranks, and back.
std::string to_wire(const ImageRequest& r);
ImageRequest image_request_from_wire(const std::string& bytes);
std::string to_wire(const VideoRequest& r);
VideoRequest video_request_from_wire(const std::string& bytes);

}  // namespace spdit::cli
