// The MP4 writer read back by FFmpeg's own ffprobe: the codec, the size, the
// frame count and the frame rate as written. Skipped, saying why, where
// ffprobe is not installed (Debian's ffmpeg package has it).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "mp4_writer.h"
#include "support/temp_dir.h"

namespace {

std::string run(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  std::array<char, 256> buf{};
  while (p && fgets(buf.data(), buf.size(), p.get())) out += buf.data();
  return out;
}

bool have_ffprobe() { return std::system("command -v ffprobe >/dev/null 2>&1") == 0; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// A moving gradient, so that the encoder has motion to code.
at::Tensor test_frames(int64_t n, int64_t h, int64_t w) {
  auto y = at::arange(h, at::kFloat).view({1, h, 1, 1});
  auto x = at::arange(w, at::kFloat).view({1, 1, w, 1});
  auto t = at::arange(n, at::kFloat).view({n, 1, 1, 1});
  auto c = at::arange(3, at::kFloat).view({1, 1, 1, 3});
  return ((x * 4 + y * 2 + t * 16 + c * 60).remainder(256)).to(at::kByte);
}

}  // namespace

TEST(Mp4Writer, ffprobe_reads_h264_with_the_frames_size_and_rate_written) {
  if (!have_ffprobe()) GTEST_SKIP() << "ffprobe is not installed (apt-get install ffmpeg)";
  spdit::test::TempDir dir;
  const std::string path = dir.path + "/clip.mp4";
  spdit::cli::write_mp4(path, test_frames(9, 48, 64), 16);
  const auto info =
      run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
          "stream=codec_name,width,height,nb_read_frames,r_frame_rate,pix_fmt "
          "-of default=nw=1 '" +
          path + "'");
  EXPECT_NE(info.find("codec_name=h264"), std::string::npos) << info;
  EXPECT_NE(info.find("width=64"), std::string::npos) << info;
  EXPECT_NE(info.find("height=48"), std::string::npos) << info;
  EXPECT_NE(info.find("nb_read_frames=9"), std::string::npos) << info;
  EXPECT_NE(info.find("r_frame_rate=16/1"), std::string::npos) << info;
  EXPECT_NE(info.find("pix_fmt=yuv420p"), std::string::npos) << info;
}

TEST(Mp4Writer, the_decoded_frames_are_close_to_the_written_ones) {
  if (!have_ffprobe()) GTEST_SKIP() << "ffmpeg is not installed (apt-get install ffmpeg)";
  spdit::test::TempDir dir;
  const std::string path = dir.path + "/clip.mp4";
  const auto frames = at::full({3, 32, 32, 3}, 0, at::kByte);
  frames[0].fill_(200);  // flat colours survive 4:2:0 and CRF 18 within a few levels
  frames[1].select(2, 0).fill_(255);
  frames[2].fill_(30);
  spdit::cli::write_mp4(path, frames, 8);
  const auto raw = run("ffmpeg -v error -i '" + path +
                       "' -f rawvideo -pix_fmt rgb24 - | od -An -tu1 -v | tr -s ' ' '\\n' "
                       "| grep -v '^$' | awk '{s+=$1; n++} END {print n, s/n}'");
  // 3 frames of 32x32x3 bytes come back, with the mean of what was written.
  const double want_mean = frames.to(at::kDouble).mean().item<double>();
  int64_t n = 0;
  double mean = 0;
  ASSERT_EQ(std::sscanf(raw.c_str(), "%ld %lf", &n, &mean), 2) << raw;
  EXPECT_EQ(n, 3 * 32 * 32 * 3);
  EXPECT_NEAR(mean, want_mean, 3.0);
}

TEST(Mp4Writer, odd_sizes_and_unwritable_paths_say_what_is_wrong) {
  auto msg = error_of([] { spdit::cli::write_mp4("/tmp/x.mp4", test_frames(2, 33, 64), 16); });
  EXPECT_NE(msg.find("even height and width; 33x64"), std::string::npos) << msg;
  msg =
      error_of([] { spdit::cli::write_mp4("/nonexistent-dir/x.mp4", test_frames(2, 32, 64), 16); });
  EXPECT_NE(msg.find("cannot write the video '/nonexistent-dir/x.mp4'"), std::string::npos) << msg;
  msg = error_of([] { spdit::cli::write_mp4("/tmp/x.mp4", at::zeros({2, 32, 32}), 16); });
  EXPECT_NE(msg.find("(F, H, W, 3) uint8"), std::string::npos) << msg;
}
