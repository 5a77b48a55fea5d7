// `spdit serve` on a Wan2.1 folder, as a user runs it: real processes, real
// HTTP over loopback, a tiny new-model folder. The video endpoint's MP4
// against `spdit run`'s, its mistakes, a leaving client, a rank failing in
// the banded decode, and the web page's <video> in a real browser.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "support/serve_client.h"
#include "support/served.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using nlohmann::json;
using namespace spdit::test;  // serve_client.h: Server, unbase64, parse_prometheus, ...

namespace {

const std::string kBin = SPDIT_BIN;
const std::string kPrompt = "a boat on a calm sea";

TempDir& scratch() {
  static TempDir tmp;
  return tmp;
}

const std::string& wan_dir() {
  static std::string dir = [] {
    const std::string d = scratch().path + "/wan-tiny";
    auto r = run_command(kBin + " new-model --model wan --preset tiny --seed 7 --out " + d);
    if (r.code != 0) throw std::runtime_error("new-model failed: " + r.output);
    return d;
  }();
  return dir;
}

bool have_ffprobe() { return std::system("command -v ffprobe >/dev/null 2>&1") == 0; }

// codec_name, width, height and nb_read_frames lines from ffprobe.
std::string probe(const std::string& mp4_bytes) {
  static int count = 0;
  const std::string path = scratch().path + "/probe-" + std::to_string(++count) + ".mp4";
  std::ofstream(path, std::ios::binary) << mp4_bytes;
  return run_command(
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,width,height,nb_read_frames -of default=nw=1 '" +
             path + "'")
      .output;
}

// The suite's server: 2 ranks (Ulysses 2), decoding in 2 bands (the default).
Server& wan_server() {
  static std::unique_ptr<Server> s = [] {
    auto server = std::make_unique<Server>(
        wan_dir(), scratch().path,
        std::vector<std::string>{"--nproc", "2", "--ulysses", "2", "--max-size", "64",
                                 "--max-frames", "17"});
    if (!server->wait_ready())
      throw std::runtime_error("the server did not get ready:\n" + server->process->output());
    return server;
  }();
  return *s;
}

const json kClip = {{"prompt", kPrompt}, {"size", "32x32"}, {"frames", 5},
                    {"fps", 8},          {"seed", 3},       {"steps", 2}};

}  // namespace

TEST(ServeVideo, TwoRanksAnswerTheMp4SpditRunMakes) {
  auto& server = wan_server();
  EXPECT_NE(server.process->output().find("decoding in 2 bands"), std::string::npos)
      << server.process->output();
  auto c = server.client();
  auto health = c.Get("/health");
  ASSERT_TRUE(health && health->status == 200);
  EXPECT_EQ(json::parse(health->body).at("makes"), "video") << health->body;

  auto res = server.generate_video(kClip);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const auto item = json::parse(res->body).at("data").at(0);
  EXPECT_EQ(item.at("seed"), 3);
  EXPECT_EQ(item.at("frames"), 5);
  const std::string mp4 = unbase64(item.at("b64_json"));

  // The same job through `spdit run`, also 2 ranks decoding in 2 bands.
  const std::string out = scratch().path + "/run.mp4";
  auto run = run_command(kBin + " run --model-dir " + wan_dir() + " --prompt '" + kPrompt +
                         "' --seed 3 --steps 2 --frames 5 --height 32 --width 32 --fps 8 "
                         "--nproc 2 --ulysses 2 --out " +
                         out);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_EQ(mp4, read_file(out)) << "the served video differs from spdit run's for the same "
                                    "seed and prompt";
  if (have_ffprobe()) {
    const auto info = probe(mp4);
    EXPECT_NE(info.find("codec_name=h264"), std::string::npos) << info;
    EXPECT_NE(info.find("width=32"), std::string::npos) << info;
    EXPECT_NE(info.find("height=32"), std::string::npos) << info;
    EXPECT_NE(info.find("nb_read_frames=5"), std::string::npos) << info;
  }

  // response_format url: the same video, fetched as video/mp4.
  json by_url = kClip;
  by_url["response_format"] = "url";
  res = server.generate_video(by_url);
  ASSERT_TRUE(res && res->status == 200) << (res ? res->body : httplib::to_string(res.error()));
  const std::string url = json::parse(res->body)["data"][0].at("url");
  const std::string host = "http://127.0.0.1:" + std::to_string(server.port);
  ASSERT_EQ(url.rfind(host + "/v1/files/", 0), 0u) << url;
  const std::string path = url.substr(host.size());  // /v1/files/<id>.mp4
  ASSERT_EQ(path.substr(path.size() - 4), ".mp4") << url;
  auto file = c.Get(path.c_str());
  ASSERT_TRUE(file && file->status == 200);
  EXPECT_EQ(file->get_header_value("Content-Type"), "video/mp4");
  EXPECT_EQ(file->body, mp4);
  // The video's id under the picture's extension is no file.
  auto wrong = c.Get((path.substr(0, path.size() - 4) + ".png").c_str());
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 404);

  const auto m = parse_prometheus(server.metrics());
  EXPECT_GE(m.at("spdit_generations_total{outcome=\"ok\"}"), 2);
  EXPECT_GE(m.at("spdit_phase_seconds_count{phase=\"decode\"}"), 2);
  EXPECT_GE(m.at("spdit_step_seconds_count"), 4);
}

TEST(ServeVideo, BadRequestsAnswer400AndPicturesAnswer501) {
  auto& server = wan_server();
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"prompt", kPrompt}, {"frames", 8}}, "'frames' 8: Wan's VAE makes 1 + 4k frames"},
      {{{"prompt", kPrompt}, {"frames", 8}}, "the nearest is 9"},
      {{{"prompt", kPrompt}, {"frames", 7}}, "the nearest is 5 or 9"},
      {{{"prompt", kPrompt}, {"frames", 21}}, "'frames' must be from 1 to 17"},
      {{{"prompt", kPrompt}, {"size", "40x32"}}, "multiple of 16"},
      {{{"prompt", kPrompt}, {"size", "128x32"}}, "too big"},
      {{{"prompt", kPrompt}, {"n", 2}}, "unknown field 'n'"},
      {{{"prompt", kPrompt}, {"size", "16x16"}, {"frames", 1}},
       "gives 1 image token(s), fewer than the 2 ranks"},
      {{{"prompt", kPrompt}, {"fps", 0}}, "'fps' must be from 1"},
      {{{"prompt", kPrompt}, {"negative_prompt", "blur"}, {"guidance", 1}},
       "'negative_prompt' steers only with classifier-free guidance"},
      {{{"prompt", kPrompt}, {"response_format", "gif"}}, "/v1/files/<id>.mp4"},
      {{{"size", "32x32"}}, "'prompt' is missing"},
  };
  for (const auto& [body, message] : cases) {
    auto res = server.generate_video(body);
    ASSERT_TRUE(res) << body;
    EXPECT_EQ(res->status, 400) << body << "\n" << res->body;
    const std::string said = json::parse(res->body).at("error").at("message");
    EXPECT_NE(said.find(message), std::string::npos) << body << " -> " << said;
  }
  auto picture = server.generate({{"prompt", kPrompt}, {"size", "32x32"}});
  ASSERT_TRUE(picture);
  EXPECT_EQ(picture->status, 501) << picture->body;
  EXPECT_NE(picture->body.find("makes videos (Wan2.1): POST /v1/videos/generations"),
            std::string::npos)
      << picture->body;
  auto res = server.generate_video(kClip);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
}

TEST(ServeVideo, AFullQueueAnswers429AndLeavingClientsAreCancelled) {
  Server server(wan_dir(), scratch().path,
                {"--nproc", "2", "--ring", "2", "--queue", "1", "--max-size", "64"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  json slow = kClip;
  slow["steps"] = 100;
  slow["frames"] = 17;
  slow["size"] = "64x64";
  const int running = post_and_leave_open(server.port, slow, "/v1/videos/generations");
  ASSERT_GE(running, 0);
  json seen;
  ASSERT_TRUE(eventually([&] {
    seen = server.progress();
    return seen.value("state", "") == "running" && seen.value("steps", 0) > 0;
  }));
  EXPECT_EQ(seen.at("kind"), "video") << seen.dump();
  EXPECT_EQ(seen.at("steps"), 100) << seen.dump();
  const int queued = post_and_leave_open(server.port, slow, "/v1/videos/generations");
  ASSERT_GE(queued, 0);
  ASSERT_TRUE(eventually([&] { return server.progress().value("queue", 0) == 1; }));
  auto full = server.generate_video(kClip);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429) << full->body;
  EXPECT_FALSE(full->get_header_value("Retry-After").empty());

  close(queued);
  close(running);
  ASSERT_TRUE(eventually([&] {
    const auto m = parse_prometheus(server.metrics());
    return m.count("spdit_generations_total{outcome=\"cancelled\"}") &&
           m.at("spdit_generations_total{outcome=\"cancelled\"}") == 2;
  })) << server.metrics();
  EXPECT_LT(parse_prometheus(server.metrics()).at("spdit_step_seconds_count"), 100)
      << "the cancelled video ran all its steps";
  auto after = server.generate_video(kClip);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
}

TEST(ServeVideo, FlagMistakesAreSaidBeforeAnyLoading) {
  auto r = run_command(kBin + " serve --model-dir " + wan_dir() + " --port 8000 --nproc 2 --cfg 2");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("(Wan2.1's CFG, FLUX.1's true CFG) one after the other on all ranks"),
            std::string::npos)
      << r.output;
  r = run_command(kBin + " serve --model-dir " + wan_dir() + " --port 8000 --vae-parallel maybe");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--vae-parallel"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("spdit serve: ready"), std::string::npos) << r.output;
}

TEST(ServeVideo, ARankFailingInTheBandedDecodeFailsTheRequestAndTheServerExits) {
  // Rank 1 throws as its band's decode starts: rank 0, waiting in the band
  // exchange, learns that rank 1 stopped.
  Server server(wan_dir(), scratch().path, {"--nproc", "2", "--ring", "2"},
                {"SPDIT_FAULT=rank=1,point=decode,action=throw"});
  ASSERT_TRUE(server.wait_ready()) << server.process->output();
  auto res = server.generate_video(kClip);
  ASSERT_TRUE(res) << httplib::to_string(res.error()) << "\n" << server.process->output();
  EXPECT_EQ(res->status, 503) << res->body;
  const std::string message = json::parse(res->body).at("error").at("message");
  EXPECT_NE(message.find("rank(s) [1] stopped"), std::string::npos) << message;
  const int code = server.process->wait(60);
  EXPECT_NE(code, 0) << server.process->output();
  EXPECT_NE(code, -1) << "the server hung after a rank failed in the decode\n"
                      << server.process->output();
  EXPECT_NE(server.process->output().find("SPDIT_FAULT: an error injected on rank 1 at decode"),
            std::string::npos)
      << server.process->output();
}

TEST(ServeVideo, TheWebPageShowsTheVideoInARealBrowser) {
  if (access("/usr/bin/chromium", X_OK) != 0)
    GTEST_SKIP() << "Debian's chromium is not installed (scripts/install_deps.sh)";
  auto& server = wan_server();
  auto api = server.generate_video(kClip);
  ASSERT_TRUE(api && api->status == 200);
  const std::string expected = json::parse(api->body)["data"][0].at("b64_json");
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port) +
                          "/?prompt=a%20boat%20on%20a%20calm%20sea&size=32x32&steps=2&seed=3"
                          "&frames=5&fps=8&run=1";
  auto r = run_command(
      "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run "
      "--mute-audio --user-data-dir=" +
      scratch().path + "/chromium-profile --virtual-time-budget=600000 --dump-dom '" + url +
      "' 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.output, m,
      std::regex(R"re(<video class="result"[^>]*src="data:video/mp4;base64,([^"]+)")re")))
      << "no video on the page:\n"
      << r.output;
  EXPECT_EQ(m[1].str(), expected) << "the page shows another video than the API gives";
}
