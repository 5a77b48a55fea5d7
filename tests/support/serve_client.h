#pragma once
// The client side of the `spdit serve` tests: a server started as a child
// process, ready once /health says so, and what the tests read from its
// answers (base64, PNG sizes, Prometheus text).
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "support/served.h"

namespace spdit::test {

using nlohmann::json;

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

inline std::string unbase64(const std::string& in) {
  std::string out;
  int bits = 0;
  uint32_t acc = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// Width and height from a PNG's IHDR; {0, 0} when it is not a PNG.
inline std::pair<int, int> png_size(const std::string& png) {
  if (png.size() < 24 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    return (uint8_t(png[at]) << 24) | (uint8_t(png[at + 1]) << 16) | (uint8_t(png[at + 2]) << 8) |
           uint8_t(png[at + 3]);
  };
  return {static_cast<int>(be32(16)), static_cast<int>(be32(20))};
}

// A server started for a test, ready once /health says so.
struct Server {
  int port = free_port();
  std::string log;
  std::unique_ptr<ChildProcess> process;
  std::string key;

  Server(const std::string& model_dir, const std::string& log_dir,
         const std::vector<std::string>& flags, const std::vector<std::string>& env = {}) {
    static int count = 0;
    log = log_dir + "/serve-" + std::to_string(++count) + ".log";
    std::vector<std::string> argv = {SPDIT_BIN, "serve",  "--model-dir",
                                     model_dir, "--port", std::to_string(port)};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (size_t i = 0; i + 1 < flags.size(); ++i) {
      if (flags[i] == "--api-key") key = flags[i + 1];
    }
    process = std::make_unique<ChildProcess>(argv, log, env);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    c.set_connection_timeout(5, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    return c;
  }
  // Polls /health until 200; false when the process ended or time ran out.
  bool wait_ready(double seconds = 120) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (process->wait(0) >= 0) return false;
      auto c = client();
      c.set_connection_timeout(1, 0);
      if (auto res = c.Get("/health"); res && res->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  httplib::Result generate(const json& body) const {
    auto c = client();
    return c.Post("/v1/images/generations", body.dump(), "application/json");
  }
  httplib::Result generate_video(const json& body) const {
    auto c = client();
    return c.Post("/v1/videos/generations", body.dump(), "application/json");
  }
  std::string metrics() const {
    auto c = client();
    auto res = c.Get("/metrics");
    return res ? res->body : "";
  }
  json progress() const {
    auto c = client();
    auto res = c.Get("/v1/progress");
    return res ? json::parse(res->body) : json{};
  }
};

// Prometheus text: name{labels} value; every line that is no comment must
// parse.
inline std::map<std::string, double> parse_prometheus(const std::string& text) {
  static const std::regex line_form(
      R"re(([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})?) (-?[0-9.eE+-]+|NaN|\+Inf|-Inf))re");
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::smatch m;
    if (!std::regex_match(line, m, line_form))
      throw std::runtime_error("not Prometheus text: '" + line + "'");
    out[m[1]] = std::stod(m[4]);
  }
  return out;
}

// A POST over a raw socket, left unanswered: closing it is a client leaving.
inline int post_and_leave_open(int port, const json& body,
                               const std::string& path = "/v1/images/generations") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  const std::string b = body.dump();
  const std::string req = "POST " + path +
                          " HTTP/1.1\r\nHost: "
                          "127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: " +
                          std::to_string(b.size()) + "\r\n\r\n" + b;
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return -1;
  return fd;
}

template <typename Pred>
inline bool eventually(Pred pred, double seconds = 60) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace spdit::test
