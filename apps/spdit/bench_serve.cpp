// `spdit bench serve`: N concurrent clients against a running server for a
// bounded time. Every answer must be 200 or 429 (the queue's back-pressure);
// latency percentiles of the 200s; each rank's resident memory from
// /metrics after a warm-up request and after the run, to show no growth.
#include "bench_serve.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "validators.h"

namespace spdit::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct LoadOptions {
  std::string url = "http://127.0.0.1:8000", api_key, size = "64x64",
              prompt = "a red fox in the snow", json_path;
  int clients = 4, steps = 2;
  int64_t frames = 0;  // > 0: videos (a Wan2.1 server), this many frames each
  double seconds = 30;
};

struct Target {
  std::string host;
  int port = 80;
};

Target parse_url(const std::string& url) {
  static const std::regex form(R"(http://([^:/]+)(:([0-9]+))?/?)");
  std::smatch m;
  if (!std::regex_match(url, m, form)) {
    throw std::invalid_argument("--url '" + url +
                                "' must look like http://HOST:PORT (the server's address)");
  }
  return {m[1], m[3].matched ? std::stoi(m[3]) : 80};
}

httplib::Client client_for(const Target& t, const LoadOptions& o) {
  httplib::Client c(t.host, t.port);
  c.set_read_timeout(600, 0);
  c.set_connection_timeout(5, 0);
  if (!o.api_key.empty()) c.set_bearer_token_auth(o.api_key.c_str());
  return c;
}

// rank -> VmRSS from /metrics.
std::map<int, double> resident_bytes(const Target& t, const LoadOptions& o) {
  auto c = client_for(t, o);
  auto res = c.Get("/metrics");
  if (!res || res->status != 200) {
    throw std::runtime_error(
        "GET " + o.url + "/metrics failed (" +
        (res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error())) +
        "): is `spdit serve` running there, with this --api-key?");
  }
  static const std::regex line(R"re(spdit_rank_resident_bytes\{rank="([0-9]+)"\} ([0-9.eE+]+))re");
  std::map<int, double> out;
  for (std::sregex_iterator it(res->body.begin(), res->body.end(), line), end; it != end; ++it) {
    out[std::stoi((*it)[1])] = std::stod((*it)[2]);
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

int run_load(const LoadOptions& o) {
  const Target target = parse_url(o.url);
  json request = {{"prompt", o.prompt}, {"size", o.size}, {"steps", o.steps}, {"seed", 0}};
  if (o.frames > 0) request["frames"] = o.frames;
  const std::string body = request.dump();
  const char* endpoint = o.frames > 0 ? "/v1/videos/generations" : "/v1/images/generations";
  auto post = [&](httplib::Client& c) { return c.Post(endpoint, body, "application/json"); };
  {
    auto c = client_for(target, o);
    auto warm = post(c);  // the first request's one-time allocations are not growth
    if (!warm || warm->status != 200) {
      throw std::runtime_error("the warm-up request failed (" +
                               (warm ? "HTTP " + std::to_string(warm->status) + ": " + warm->body
                                     : httplib::to_string(warm.error())) +
                               ")");
    }
  }
  const auto before = resident_bytes(target, o);
  std::mutex mutex;
  std::map<int, int> answered;
  std::vector<double> latencies;
  int failed_connections = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(o.seconds);
  std::vector<std::thread> clients;
  for (int i = 0; i < o.clients; ++i) {
    clients.emplace_back([&] {
      auto c = client_for(target, o);
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        auto res = post(c);
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        double back_off = 0;
        {
          std::lock_guard<std::mutex> lock(mutex);
          if (!res) {
            ++failed_connections;
            continue;
          }
          ++answered[res->status];
          if (res->status == 200) latencies.push_back(s);
        }
        if (res->status == 429) {  // back off as told, within the run's time
          const std::string after = res->get_header_value("Retry-After");
          back_off = std::min(after.empty() ? 1.0 : std::atof(after.c_str()), 0.5);
        }
        std::this_thread::sleep_for(std::chrono::duration<double>(back_off));
      }
    });
  }
  for (auto& t : clients) t.join();
  const auto after = resident_bytes(target, o);

  int other = 0;
  json by_status = json::object();
  for (const auto& [status, n] : answered) {
    by_status[std::to_string(status)] = n;
    if (status != 200 && status != 429) other += n;
  }
  json ranks = json::array();
  for (const auto& [rank, bytes] : after) {
    const double was = before.count(rank) ? before.at(rank) : 0;
    ranks.push_back({{"rank", rank},
                     {"resident_bytes_before", was},
                     {"resident_bytes_after", bytes},
                     {"resident_growth_bytes", bytes - was}});
  }
  const json result = {{"url", o.url},
                       {"clients", o.clients},
                       {"seconds", o.seconds},
                       {"size", o.size},
                       {"steps", o.steps},
                       {"frames", o.frames},
                       {"answered", by_status},
                       {"other", other},
                       {"failed_connections", failed_connections},
                       {"latency_p50_s", percentile(latencies, 0.5)},
                       {"latency_p95_s", percentile(latencies, 0.95)},
                       {"ranks", ranks}};
  std::cout << "bench serve: " << o.clients << " clients for " << o.seconds << " s against "
            << o.url << " (" << o.size << ", " << o.steps << " steps"
            << (o.frames > 0 ? ", " + std::to_string(o.frames) + " frames" : std::string())
            << ")\n";
  for (const auto& [status, n] : answered) std::cout << "  HTTP " << status << ": " << n << "\n";
  if (failed_connections)
    std::cout << "  no answer (connection failed): " << failed_connections << "\n";
  std::cout << std::fixed << std::setprecision(3) << "  latency of the 200s: p50 "
            << percentile(latencies, 0.5) << " s, p95 " << percentile(latencies, 0.95) << " s\n";
  for (const auto& r : ranks) {
    std::cout << std::setprecision(1) << "  rank " << r["rank"] << ": resident "
              << r["resident_bytes_before"].get<double>() / 1e6 << " MB -> "
              << r["resident_bytes_after"].get<double>() / 1e6 << " MB\n";
  }
  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    f << result.dump(2) << "\n";
    if (!f.flush()) throw std::runtime_error("cannot write --json '" + o.json_path + "'");
  }
  // Every request answered, and only with 200 or 429.
  return other == 0 && failed_connections == 0 ? 0 : 1;
}

}  // namespace

void add_bench_serve_command(CLI::App& bench, Action& action) {
  static LoadOptions o;
  auto* cmd = bench.add_subcommand("serve",
                                   "Load test of a running `spdit serve`: N clients for T seconds");
  cmd->add_option("--url", o.url, "The server")->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "The server's --api-key");
  cmd->add_option("--clients", o.clients, "Concurrent clients")
      ->check(whole_number(1, 1000))
      ->capture_default_str();
  cmd->add_option("--seconds", o.seconds, "How long to send requests")
      ->check(positive_seconds())
      ->capture_default_str();
  cmd->add_option("--size", o.size, "Picture size of each request")->capture_default_str();
  cmd->add_option("--steps", o.steps, "Steps of each request")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--prompt", o.prompt, "Prompt of each request")->capture_default_str();
  cmd->add_option("--frames", o.frames,
                  "Ask for videos of this many frames (POST /v1/videos/generations, a Wan2.1 "
                  "server)")
      ->check(whole_number(1));
  cmd->add_option("--json", o.json_path, "Write the figures as JSON");
  cmd->callback([&action] { action = [] { return run_load(o); }; });
}

}  // namespace spdit::cli
