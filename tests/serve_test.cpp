// `spdit serve` as a user runs it: real processes, real HTTP over loopback,
// on a tiny new-model folder. Parity with `spdit run`, the mistakes a client
// makes, the queue, cancellation, a dying rank, SIGTERM, the web page in a
// real browser and a short load run.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "support/serve_client.h"
#include "support/served.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using nlohmann::json;
using spdit::test::ChildProcess;
using spdit::test::free_port;
using spdit::test::run_command;
using spdit::test::TempDir;
using namespace spdit::test;  // serve_client.h: Server, unbase64, parse_prometheus, ...

namespace {

const std::string kBin = SPDIT_BIN;
const std::string kPrompt = "a red circle on a blue background";

TempDir& scratch() {
  static TempDir tmp;
  return tmp;
}

// One tiny FLUX.1 folder for the whole suite.
const std::string& model_dir() {
  static std::string dir = [] {
    const std::string d = scratch().path + "/flux-tiny";
    auto r = run_command(kBin + " new-model --model flux --preset tiny --seed 5 --out " + d);
    if (r.code != 0) throw std::runtime_error("new-model failed: " + r.output);
    return d;
  }();
  return dir;
}

// The suite's server: 2 ranks (Ulysses 2), an API key.
Server& shared_server() {
  // Static: stopped (its process group killed) when the test program ends.
  static std::unique_ptr<Server> s = [] {
    auto server = std::make_unique<Server>(
        model_dir(), scratch().path,
        std::vector<std::string>{"--nproc", "2", "--ulysses", "2", "--api-key", "sekret",
                                 "--max-size", "256"});
    if (!server->wait_ready())
      throw std::runtime_error("the server did not get ready:\n" + server->process->output());
    return server;
  }();
  return *s;
}

const json kSmall = {{"prompt", kPrompt}, {"size", "64x64"}, {"seed", 7}, {"steps", 2}};

}  // namespace

TEST(Serve, TwoRanksAnswerThePictureSpditRunMakes) {
  auto& server = shared_server();
  auto res = server.generate(kSmall);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const auto answer = json::parse(res->body);
  ASSERT_TRUE(answer.at("created").is_number_integer());
  ASSERT_EQ(answer.at("data").size(), 1u);
  const std::string png = unbase64(answer["data"][0].at("b64_json"));
  EXPECT_EQ(png_size(png), std::make_pair(64, 64));
  EXPECT_EQ(answer["data"][0].at("seed"), 7);

  // Both decode in two bands of rows (--vae-parallel on, the default).
  const std::string out = scratch().path + "/run.png";
  auto run = run_command(kBin + " run --model-dir " + model_dir() + " --prompt '" + kPrompt +
                         "' --seed 7 --steps 2 --height 64 --width 64 --nproc "
                         "2 --ulysses 2 --out " +
                         out);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(png, read_file(out)) << "the served picture differs from spdit "
                                    "run's for the same seed and prompt";

  // response_format url: the same picture, fetched; n: one per seed.
  json two = kSmall;
  two["response_format"] = "url";
  two["n"] = 2;
  res = server.generate(two);
  ASSERT_TRUE(res && res->status == 200) << (res ? res->body : httplib::to_string(res.error()));
  const auto urls = json::parse(res->body).at("data");
  ASSERT_EQ(urls.size(), 2u);
  EXPECT_EQ(urls[1].at("seed"), 8);
  std::vector<std::string> files;
  for (const auto& item : urls) {
    const std::string url = item.at("url");
    const std::string prefix = "http://127.0.0.1:" + std::to_string(server.port);
    ASSERT_EQ(url.rfind(prefix + "/v1/files/", 0), 0u) << url;
    auto c = server.client();
    auto file = c.Get(url.substr(prefix.size()).c_str());
    ASSERT_TRUE(file && file->status == 200);
    EXPECT_EQ(file->get_header_value("Content-Type"), "image/png");
    files.push_back(file->body);
  }
  EXPECT_EQ(files[0], png);
  EXPECT_NE(files[1], png);
  EXPECT_EQ(png_size(files[1]), std::make_pair(64, 64));
  auto c = server.client();
  auto missing = c.Get("/v1/files/00000000000000000000000.png");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

// True CFG (diffusers' true_cfg_scale and negative_prompt) answers what
// `spdit run --cfg-scale --negative-prompt` draws.
TEST(Serve, TrueCfgAnswersThePictureSpditRunMakes) {
  auto& server = shared_server();
  json guided = kSmall;
  guided["true_cfg_scale"] = 3;
  guided["negative_prompt"] = "a blue square";
  auto res = server.generate(guided);
  ASSERT_TRUE(res && res->status == 200) << (res ? res->body : httplib::to_string(res.error()));
  const std::string png = unbase64(json::parse(res->body)["data"][0].at("b64_json"));
  const std::string out = scratch().path + "/run-cfg.png";
  auto run = run_command(kBin + " run --model-dir " + model_dir() + " --prompt '" + kPrompt +
                         "' --cfg-scale 3 --negative-prompt 'a blue square' --seed 7 --steps 2 "
                         "--height 64 --width 64 --nproc 2 --ulysses 2 --out " +
                         out);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(png, read_file(out));
  res = server.generate(kSmall);
  ASSERT_TRUE(res && res->status == 200);
  EXPECT_NE(png, unbase64(json::parse(res->body)["data"][0].at("b64_json")))
      << "guidance changed nothing";
}

// A folder's _spdit_run_defaults (spdit's trained demo has them) are the
// requests' defaults: its size, its T5 length and its true CFG scale.
TEST(Serve, AFoldersRunDefaultsAreTheRequestsDefaults) {
  const std::string dir = scratch().path + "/with-defaults";
  ASSERT_EQ(run_command("cp -r " + model_dir() + " " + dir).code, 0);
  {
    std::ifstream in(dir + "/model_index.json");
    json index = json::parse(in);
    index["_spdit_run_defaults"] = {
        {"height", 64}, {"width", 96}, {"max_sequence_length", 32}, {"true_cfg_scale", 3}};
    std::ofstream(dir + "/model_index.json") << index.dump(2);
  }
  Server server(dir, scratch().path, {"--nproc", "1"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  auto res = server.generate({{"prompt", kPrompt}, {"seed", 7}, {"steps", 2}});
  ASSERT_TRUE(res && res->status == 200) << (res ? res->body : httplib::to_string(res.error()));
  const std::string png = unbase64(json::parse(res->body)["data"][0].at("b64_json"));
  EXPECT_EQ(png_size(png), std::make_pair(96, 64));
  const std::string out = scratch().path + "/run-defaults.png";
  auto run = run_command(kBin + " run --model-dir " + dir + " --prompt '" + kPrompt +
                         "' --seed 7 --steps 2 --nproc 1 --out " + out);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("true CFG 3"), std::string::npos) << run.output;
  EXPECT_EQ(png, read_file(out));
  // Over the folder's 32 T5 tokens: refused, not cut.
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "red ";
  res = server.generate({{"prompt", long_prompt}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("limit of 32"), std::string::npos) << res->body;
}

TEST(Serve, BadRequestsAnswer400AndTheServerKeepsServing) {
  auto& server = shared_server();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not JSON"},
      {"[1, 2]", "must be a JSON object"},
      {R"({"size": "64x64"})", "'prompt' is missing"},
      {R"({"prompt": 5})", "'prompt' must be a string, not an integer"},
      {R"({"prompt": "x", "sizes": "64x64"})", "unknown field 'sizes'"},
      {R"({"prompt": "x", "size": "60x64"})", "multiple of 16"},
      {R"({"prompt": "x", "size": "64 by 64"})", "WIDTHxHEIGHT"},
      {R"({"prompt": "x", "size": "512x512"})", "too big"},
      {R"({"prompt": "x", "n": 100})", "'n' must be from 1 to 4"},
      {R"({"prompt": "x", "n": "2"})", "'n' must be a whole number, not a string"},
      {R"({"prompt": "x", "steps": 0})", "'steps' must be from 1"},
      {R"({"prompt": "x", "seed": -1})", "'seed' must be from 0"},
      {R"({"prompt": "x", "guidance": "high"})", "'guidance' must be a number"},
      {R"({"prompt": "x", "response_format": "jpeg"})", "\"b64_json\" or \"url\""},
      {R"({"prompt": "x", "negative_prompt": "blur"})",
       "'negative_prompt' steers only with true CFG"},
      {R"({"prompt": "x", "true_cfg_scale": "4"})", "'true_cfg_scale' must be a number"},
      {R"({"prompt": "x", "true_cfg_scale": 400})", "'true_cfg_scale' must be from 0 to 100"},
      {json{{"prompt",
             [] {
               std::string p;
               for (int i = 0; i < 700; ++i) p += "fox ";
               return p;
             }()}}
           .dump(),
       "over this model's limit of 512"},
  };
  auto c = server.client();
  for (const auto& [body, message] : cases) {
    auto res = c.Post("/v1/images/generations", body, "application/json");
    ASSERT_TRUE(res) << body;
    EXPECT_EQ(res->status, 400) << body << "\n" << res->body;
    const auto error = json::parse(res->body).at("error");
    EXPECT_NE(error.at("message").get<std::string>().find(message), std::string::npos)
        << body << " -> " << error.dump();
  }
  auto res = server.generate(kSmall);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

TEST(Serve, AnApiKeyIsNeededOnEveryRequestButThePage) {
  auto& server = shared_server();
  httplib::Client bare("127.0.0.1", server.port);
  for (const char* path : {"/health", "/metrics", "/v1/progress"}) {
    auto res = bare.Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401) << path;
  }
  auto res = bare.Post("/v1/images/generations", kSmall.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_NE(res->body.find("Authorization: Bearer"), std::string::npos) << res->body;
  bare.set_bearer_token_auth("wrong");
  res = bare.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_NE(res->body.find("not this server's"), std::string::npos) << res->body;
  httplib::Client page("127.0.0.1", server.port);
  res = page.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("Generate"), std::string::npos);
}

TEST(Serve, MetricsParseAsPrometheusTextAndCountWhatHappened) {
  auto& server = shared_server();
  ASSERT_EQ(server.generate(kSmall)->status, 200);
  auto c = server.client();
  auto video = c.Post("/v1/videos/generations", kSmall.dump(), "application/json");
  ASSERT_TRUE(video);
  EXPECT_EQ(video->status, 501);
  EXPECT_NE(video->body.find("needs a Wan2.1 model folder"), std::string::npos) << video->body;
  const auto m = parse_prometheus(server.metrics());
  EXPECT_EQ(m.at("spdit_ready"), 1);
  EXPECT_GE(m.at("spdit_requests_total{status=\"200\"}"), 1);
  EXPECT_GE(m.at("spdit_requests_total{status=\"501\"}"), 1);
  EXPECT_EQ(m.at("spdit_queue_depth"), 0);
  EXPECT_GE(m.at("spdit_step_seconds_count"), 2);
  EXPECT_GT(m.at("spdit_phase_seconds_sum{phase=\"denoise\"}"), 0);
  EXPECT_GE(m.at("spdit_phase_seconds_count{phase=\"decode\"}"), 1);
  for (const char* rank : {"0", "1"}) {
    const std::string r = std::string("{rank=\"") + rank + "\"}";
    EXPECT_GT(m.at("spdit_rank_resident_bytes" + r), 1e6) << rank;
    EXPECT_GT(m.at("spdit_rank_tensor_bytes_peak" + r), 0) << rank;
    // Ulysses moves the sequence with all-to-all on both ranks.
    EXPECT_GT(
        m.at(std::string("spdit_comm_sent_bytes_total{rank=\"") + rank + "\",kind=\"all_to_all\"}"),
        0);
  }
}

TEST(Serve, HealthIsUnreadyUntilEveryRankHasLoadedAndSigtermStopsCleanly) {
  // The ranks started by hand, as a cluster's launcher would: rank 0 alone
  // cannot be ready; rank 1 joining makes it so.
  const int port = free_port(), master = free_port();
  auto env = [&](int rank) {
    return std::vector<std::string>{"RANK=" + std::to_string(rank),
                                    "LOCAL_RANK=" + std::to_string(rank),
                                    "WORLD_SIZE=2",
                                    "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + std::to_string(master),
                                    "SPDIT_TIMEOUT=60"};
  };
  const std::vector<std::string> argv = {
      kBin, "serve", "--model-dir", model_dir(), "--port", std::to_string(port), "--ring", "2"};
  ChildProcess rank0(argv, scratch().path + "/health-rank0.log", env(0));
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  int status = 0;
  std::string body;
  ASSERT_TRUE(eventually([&] {
    auto h = c.Get("/health");
    if (h) status = h->status, body = h->body;
    return static_cast<bool>(h);
  })) << rank0.output();
  EXPECT_EQ(status, 503);
  EXPECT_EQ(json::parse(body).at("status"), "loading") << body;
  auto early = c.Post("/v1/images/generations", kSmall.dump(), "application/json");
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 503);
  EXPECT_EQ(early->get_header_value("Retry-After"), "5");

  ChildProcess rank1(argv, scratch().path + "/health-rank1.log", env(1));
  ASSERT_TRUE(eventually([&] {
    auto h = c.Get("/health");
    return h && h->status == 200;
  })) << rank0.output()
      << rank1.output();
  auto res = c.Post("/v1/images/generations", kSmall.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  rank0.signal(SIGTERM);
  rank1.signal(SIGTERM);  // as a launcher forwards it: rank 1 waits for rank 0's word
  EXPECT_EQ(rank0.wait(60), 0) << rank0.output();
  EXPECT_EQ(rank1.wait(60), 0) << rank1.output();
  EXPECT_NE(rank0.output().find("spdit serve: stopped"), std::string::npos) << rank0.output();
}

TEST(Serve, AFullQueueAnswers429WithRetryAfterAndALeavingClientIsCancelled) {
  Server server(model_dir(), scratch().path,
                {"--nproc", "2", "--ring", "2", "--queue", "1", "--max-size", "256"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  // Long enough to be seen running: 4 pictures of 100 steps at 256x256.
  const json slow = {
      {"prompt", kPrompt}, {"size", "256x256"}, {"steps", 100}, {"n", 4}, {"seed", 1}};
  const int running = post_and_leave_open(server.port, slow);
  ASSERT_GE(running, 0);
  ASSERT_TRUE(eventually([&] { return server.progress().value("state", "") == "running"; }));
  const int queued = post_and_leave_open(server.port, slow);
  ASSERT_GE(queued, 0);
  ASSERT_TRUE(eventually([&] { return server.progress().value("queue", 0) == 1; }));

  auto full = server.generate(kSmall);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429) << full->body;
  EXPECT_FALSE(full->get_header_value("Retry-After").empty());
  EXPECT_NE(full->body.find("queue is full"), std::string::npos) << full->body;

  // Both clients leave: the running one stops at its next step, the queued
  // one never starts, and the server goes on serving.
  close(queued);
  close(running);
  ASSERT_TRUE(eventually([&] {
    const auto m = parse_prometheus(server.metrics());
    return m.count("spdit_generations_total{outcome=\"cancelled\"}") &&
           m.at("spdit_generations_total{outcome=\"cancelled\"}") == 2;
  })) << server.metrics();
  const auto m = parse_prometheus(server.metrics());
  EXPECT_EQ(m.count("spdit_generations_total{outcome=\"ok\"}"), 0u);
  EXPECT_LT(m.at("spdit_step_seconds_count"), 400) << "the cancelled generation ran all its steps";
  auto after = server.generate(kSmall);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
}

TEST(Serve, ARankThatDiesFailsTheRequestWith503NamingItAndTheServerExitsNonZero) {
  // Rank 1 kills itself (SIGKILL) in an attention of the first request.
  Server server(model_dir(), scratch().path, {"--nproc", "2", "--ulysses", "2"},
                {"SPDIT_FAULT=rank=1,point=attention,after=3"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  auto res = server.generate(kSmall);
  ASSERT_TRUE(res) << httplib::to_string(res.error()) << "\n" << server.process->output();
  EXPECT_EQ(res->status, 503) << res->body;
  const std::string message = json::parse(res->body).at("error").at("message");
  EXPECT_NE(message.find("rank(s) [1] stopped"), std::string::npos) << message;
  EXPECT_EQ(message.find("state of this forward"), std::string::npos)
      << "the SP diagnosis is for the log\n"
      << message;
  auto health = server.client().Get("/health");
  if (health) {  // the server lingers a moment, unready, before it exits
    EXPECT_EQ(health->status, 503);
    EXPECT_EQ(json::parse(health->body).at("status"), "failed");
  }
  const int code = server.process->wait(60);
  EXPECT_NE(code, 0) << server.process->output();
  EXPECT_NE(code, -1) << "the server did not exit after losing a rank\n"
                      << server.process->output();
}

TEST(Serve, ADecodeErrorOnRankZeroAloneFailsOnlyThatRequest) {
  // --vae-parallel off: rank 0 decodes alone, so its error ends only the
  // request (500), and the server goes on.
  Server server(model_dir(), scratch().path,
                {"--nproc", "2", "--ulysses", "2", "--vae-parallel", "off"},
                {"SPDIT_FAULT=rank=0,point=decode,action=throw"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  EXPECT_NE(server.process->output().find("decoding on rank 0"), std::string::npos)
      << server.process->output();
  auto res = server.generate(kSmall);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 500) << res->body;
  EXPECT_NE(res->body.find("decoding failed on rank 0: SPDIT_FAULT: an error injected on rank 0"),
            std::string::npos)
      << res->body;
  res = server.generate(kSmall);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(parse_prometheus(server.metrics()).at("spdit_generations_total{outcome=\"failed\"}"),
            1);
}

TEST(Serve, ADecodeErrorOnRankZeroInBandsAnswers503WithTheReasonAndTheServerExits) {
  // In bands the others wait in a band exchange: the job cannot go on.
  Server server(model_dir(), scratch().path, {"--nproc", "2", "--ulysses", "2"},
                {"SPDIT_FAULT=rank=0,point=decode,action=throw"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  auto res = server.generate(kSmall);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 503) << res->body;
  EXPECT_NE(res->body.find("decoding failed on rank 0: SPDIT_FAULT"), std::string::npos)
      << res->body;
  const int code = server.process->wait(60);
  EXPECT_NE(code, 0) << server.process->output();
  EXPECT_NE(code, -1) << "the server hung after its decode failed\n" << server.process->output();
}

TEST(Serve, SigtermCancelsTheRunningRequestAndExitsZero) {
  Server server(model_dir(), scratch().path,
                {"--nproc", "2", "--ulysses", "2", "--max-size", "256"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  const json slow = {
      {"prompt", kPrompt}, {"size", "256x256"}, {"steps", 100}, {"n", 4}, {"seed", 1}};
  int status = 0;
  std::string body = "(no answer)";
  std::thread client([&] {
    if (auto res = server.generate(slow)) status = res->status, body = res->body;
  });
  const bool ran = eventually([&] { return server.progress().value("state", "") == "running"; });
  server.process->signal(SIGTERM);
  client.join();
  ASSERT_TRUE(ran);
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("shutting down"), std::string::npos) << body;
  EXPECT_EQ(server.process->wait(60), 0) << server.process->output();
}

TEST(Serve, TheWebPageShowsThePictureInARealBrowser) {
  if (access("/usr/bin/chromium", X_OK) != 0)
    GTEST_SKIP() << "Debian's chromium is not installed (scripts/install_deps.sh)";
  auto& server = shared_server();
  auto api = server.generate(kSmall);
  ASSERT_TRUE(api && api->status == 200);
  const std::string expected = json::parse(api->body)["data"][0].at("b64_json");
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port) +
                          "/?prompt=a%20red%20circle%20on%20a%20blue%"
                          "20background&size=64x64&steps=2&seed=7"
                          "&key=sekret&run=1";
  const std::string profile = scratch().path + "/chromium-profile";
  auto r = run_command(
      "timeout 120 /usr/bin/chromium --headless --no-sandbox "
      "--disable-gpu --no-first-run "
      "--user-data-dir=" +
      profile + " --virtual-time-budget=600000 --dump-dom '" + url + "' 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.output, m,
      std::regex(R"re(<img class="result"[^>]*src="data:image/png;base64,([^"]+)")re")))
      << "no picture on the page:\n"
      << r.output;
  EXPECT_EQ(m[1].str(), expected) << "the page shows another picture than the API gives";
}

TEST(Serve, ShortLoadRunAnswersEveryRequestAndMemoryDoesNotGrow) {
  auto& server = shared_server();
  const std::string json_out = scratch().path + "/load.json";
  auto r = run_command(kBin + " bench serve --url http://127.0.0.1:" + std::to_string(server.port) +
                       " --api-key sekret --clients 4 --seconds 4 --size 64x64 "
                       "--steps 2 --json " +
                       json_out);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto j = json::parse(read_file(json_out));
  EXPECT_GT(j.at("answered").at("200").get<int>(), 0) << j.dump(2);
  EXPECT_EQ(j.at("other"), 0) << j.dump(2);
  EXPECT_EQ(j.at("failed_connections"), 0) << j.dump(2);
  for (const auto& rank : j.at("ranks")) {
    // After a warm-up request, repeated requests hold no more memory: a leak of
    // even one picture per request would show here over dozens of requests.
    EXPECT_LT(rank.at("resident_growth_bytes").get<double>(), 32e6) << j.dump(2);
  }
}

TEST(Serve, APortInUseOrABadFlagIsSaidBeforeAnyLoading) {
  // A listening socket of the test's own holds the port.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  auto r = run_command(kBin + " serve --model-dir " + model_dir() + " --port " + port);
  close(fd);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot listen on 127.0.0.1:" + port + " (Address already in use)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("spdit serve: ready"), std::string::npos) << r.output;

  r = run_command(kBin + " serve --model-dir " + model_dir() + " --port 70000");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--port"), std::string::npos) << r.output;
  r = run_command(kBin + " serve --model-dir " + model_dir() + " --port 8000 --nproc 2 --cfg 2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("one after the other on all ranks"), std::string::npos) << r.output;
  r = run_command(kBin + " serve --model-dir " + model_dir());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--port is required"), std::string::npos) << r.output;
  r = run_command(kBin + " serve --model-dir " + scratch().path + "/no-such-model --port 8000");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("no-such-model"), std::string::npos) << r.output;
}
