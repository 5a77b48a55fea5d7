#include "serve_http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "serve_page.h"

namespace spdit::cli {
namespace {

using nlohmann::json;

std::string base64(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += table[(v >> s) & 63];
  }
  if (i < in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (i + 1 < in.size() ? uint8_t(in[i + 1]) << 8 : 0);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += i + 1 < in.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string address_of(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
  if (a.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
  }
  return text;
}

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// httplib 0.11 gives a handler no access to its connection, so a client
// that left cannot be seen from the request. The connection's socket is the
// one of this process whose two ends are the request's (address and ports);
// it stays open (httplib's worker holds it) while the handler runs.
int socket_of(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (port_of(local) == req.local_port && port_of(peer) == req.remote_port &&
        address_of(peer) == req.remote_addr) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

// An orderly close (a read of 0 bytes) or a reset: the client is gone.
// Bytes waiting (a pipelined request) mean it is still there.
bool client_gone(int fd) {
  if (fd < 0) return false;
  char byte;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void answer(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

std::string images_body(const Job& job, const std::string& base_url, ServeState& state) {
  json data = json::array();
  for (size_t i = 0; i < job.pngs.size(); ++i) {
    json item = {{"seed", job.seeds[i]}};
    if (job.request.response_format == "url") {
      item["url"] = base_url + "/v1/files/" + state.keep_file(job.pngs[i]) + ".png";
    } else {
      item["b64_json"] = base64(job.pngs[i]);
    }
    data.push_back(item);
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return json{{"created", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
              {"data", data}}
      .dump();
}

std::string video_body(const Job& job, const std::string& base_url, ServeState& state) {
  json item = {{"seed", job.video.seed}, {"frames", job.video.frames}, {"fps", job.video.fps}};
  if (job.video.response_format == "url") {
    item["url"] = base_url + "/v1/files/" + state.keep_file(job.mp4, "mp4") + ".mp4";
  } else {
    item["b64_json"] = base64(job.mp4);
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return json{{"created", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
              {"data", json::array({item})}}
      .dump();
}

}  // namespace

HttpFrontend::HttpFrontend(ServeState& state, HttpOptions options)
    : state_(state), options_(std::move(options)), server_(std::make_unique<httplib::Server>()) {}

HttpFrontend::~HttpFrontend() { stop(); }

void HttpFrontend::start() {
  auto& s = *server_;
  // Every queued request holds a thread while it waits; health, metrics and
  // progress need theirs beside them.
  const size_t threads = state_.queue.capacity() + 8;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_keep_alive_timeout(1);  // so that stop() never waits long on an idle connection
  s.set_payload_max_length(1 << 20);
  add_routes();
  if (!s.bind_to_port(options_.host, options_.port)) {
    throw std::runtime_error("cannot listen on " + options_.host + ":" +
                             std::to_string(options_.port) + " (" + std::strerror(errno) +
                             "): another server on that port? choose another --port, or "
                             "check --host is an address of this machine");
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  std::cout << "spdit serve: listening on http://" << options_.host << ":" << options_.port
            << std::endl;
}

void HttpFrontend::stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

void HttpFrontend::add_routes() {
  auto& s = *server_;
  using httplib::Request;
  using httplib::Response;
  using Handled = httplib::Server::HandlerResponse;

  s.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (options_.api_key.empty() || (req.method == "GET" && req.path == "/"))
      return Handled::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + options_.api_key)
      return Handled::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    answer(res, 401,
           error_body(req.has_header("Authorization")
                          ? "the API key in 'Authorization: Bearer ...' is not "
                            "this server's"
                          : "this server needs an API key: send "
                            "'Authorization: Bearer KEY'",
                      "unauthorized"));
    return Handled::Handled;
  });
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    if (!res.body.empty()) return Handled::Unhandled;
    const std::string what = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                             : res.status == 413 ? "the request body is over the 1 MB limit"
                                                 : "HTTP " + std::to_string(res.status);
    answer(res, res.status, error_body(what, "invalid_request_error"));
    return Handled::Handled;
  }));

  s.Get("/", [](const Request&, Response& res) {
    res.set_content(serve_page_html(), "text/html; charset=utf-8");
  });

  s.Get("/health", [this](const Request&, Response& res) {
    if (state_.failed()) {
      answer(res, 503, json{{"status", "failed"}, {"message", state_.failure()}}.dump());
    } else if (state_.stopping()) {
      answer(res, 503, json{{"status", "stopping"}}.dump());
    } else if (!state_.ready()) {
      answer(res, 503,
             json{{"status", "loading"}, {"message", "not every rank has loaded the model yet"}}
                 .dump());
    } else {
      answer(res, 200,
             json{{"status", "ready"},
                  {"ranks", state_.ranks()},
                  {"makes", state_.limits().makes_video ? "video" : "image"}}
                 .dump());
    }
  });

  s.Get("/metrics", [this](const Request&, Response& res) {
    res.set_content(
        state_.metrics.prometheus_text(state_.ready(), state_.queue.depth(),
                                       state_.queue.capacity(), state_.running() != nullptr),
        "text/plain; version=0.0.4");
  });

  s.Get("/v1/progress", [this](const Request&, Response& res) {
    json j = {{"queue", state_.queue.depth()}, {"ready", state_.ready()}};
    if (auto job = state_.running()) {
      j.update({{"state", "running"},
                {"kind", job->is_video ? "video" : "image"},
                {"image", job->image.load()},
                {"n", job->request.n},
                {"step", job->step.load()},
                {"steps", job->steps.load()}});
    } else {
      j["state"] = "idle";
    }
    answer(res, 200, j.dump());
  });

  s.Get(R"(/v1/files/([0-9a-f]+)\.(png|mp4))", [this](const Request& req, Response& res) {
    std::string bytes;
    const std::string ext = req.matches[2];
    if (!state_.find_file(req.matches[1], ext, bytes)) {
      answer(res, 404,
             error_body("no file " + req.path +
                            ": it never existed or is past the server's "
                            "--keep-files; ask for response_format "
                            "b64_json to keep the files yourself",
                        "not_found"));
      return;
    }
    res.set_content(bytes, ext == "png" ? "image/png" : "video/mp4");
  });

  s.Post("/v1/images/generations",
         [this](const Request& req, Response& res) { generate(req, res, false); });
  s.Post("/v1/videos/generations",
         [this](const Request& req, Response& res) { generate(req, res, true); });
}

void HttpFrontend::generate(const httplib::Request& req, httplib::Response& res, bool video) {
  const auto record = [&] { state_.metrics.request_answered(res.status); };
  if (state_.failed())
    return answer(res, 503, error_body(state_.failure(), "rank_failed")), record();
  if (state_.stopping()) {
    return answer(res, 503, error_body("the server is shutting down", "shutting_down")), record();
  }
  if (!state_.ready()) {
    res.set_header("Retry-After", "5");
    return answer(res, 503,
                  error_body("the model is still loading on the ranks; retry shortly", "loading")),
           record();
  }
  auto job = std::make_shared<Job>();
  try {
    static thread_local std::mt19937_64 random{std::random_device{}()};
    job->is_video = video;
    if (video)
      job->video = parse_video_request(req.body, state_.limits(), random() >> 11);
    else
      job->request = parse_image_request(req.body, state_.limits(), random() >> 11);
  } catch (const WrongModel& e) {
    return answer(res, 501, error_body(e.what(), "not_available_for_this_model")), record();
  } catch (const BadRequest& e) {
    return answer(res, 400, error_body(e.what(), "invalid_request_error")), record();
  }
  job->id = state_.next_job_id();
  switch (state_.queue.submit(job)) {
    case JobQueue::Submitted::kFull: {
      // One generation runs and the queue is full: about that long until a
      // place frees up.
      const double wait = std::max(1.0, std::ceil(state_.typical_generation_seconds()));
      res.set_header("Retry-After", std::to_string(static_cast<int64_t>(wait)));
      answer(res, 429,
             error_body("the queue is full (" + std::to_string(state_.queue.capacity()) +
                            " waiting behind the running generation); retry "
                            "after the Retry-After seconds",
                        "queue_full"));
      return record();
    }
    case JobQueue::Submitted::kClosed:
      answer(res, 503,
             error_body(state_.failed() ? state_.failure() : "the server is shutting down",
                        state_.failed() ? "rank_failed" : "shutting_down"));
      return record();
    case JobQueue::Submitted::kQueued:
      break;
  }
  const int fd = socket_of(req);
  while (!job->wait_for(100)) {
    if (!job->cancelled && client_gone(fd))
      job->cancelled = true;  // the loop stops it at its next step
  }
  if (job->status() == 200) {
    const std::string host = req.has_header("Host")
                                 ? req.get_header_value("Host")
                                 : options_.host + ":" + std::to_string(options_.port);
    answer(res, 200,
           video ? video_body(*job, "http://" + host, state_)
                 : images_body(*job, "http://" + host, state_));
  } else {
    answer(res, job->status(), job->body());
  }
  record();
}

}  // namespace spdit::cli
