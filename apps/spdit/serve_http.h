#pragma once
// `spdit serve`, rank 0: the HTTP side (cpp-httplib). It validates, queues
// and answers; the generation loop (serve_loop.h) does the work.
#include <memory>
#include <string>
#include <thread>

#include "serve_state.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace spdit::cli {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;  // empty: no check
};

class HttpFrontend {
 public:
  HttpFrontend(ServeState& state, HttpOptions options);
  ~HttpFrontend();
  /// Binds (an error naming the address when it cannot) and serves on a thread.
  void start();
  /// Stops accepting, lets the handlers answer, joins.
  void stop();

 private:
  void add_routes();
  /// POST /v1/images/generations or /v1/videos/generations: checks, queues,
  /// waits (cancelling when the client leaves), answers.
  void generate(const httplib::Request& req, httplib::Response& res, bool video);
  ServeState& state_;
  HttpOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace spdit::cli
