// fix_text where a user meets it: `spdit run` on a Wan folder, as separate
// processes (2 ranks). A prompt pasted with mojibake, curly quotes, a
// ligature, fullwidth letters and a Windows line break conditions the video
// exactly as its clean spelling does, because Wan's prompt_clean runs ftfy
// first; a prompt that really differs does not (so the test can fail).
#include <gtest/gtest.h>
#include <unistd.h>

#include "spdit/checkpoints/checkpoint.h"
#include "spdit/pipelines/new_model.h"
#include "support/sanitizers.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using test::run_command;
using test::TempDir;

namespace {

at::Tensor tensor_in(const std::string& file, const std::string& name) {
  return checkpoints::Checkpoint::open(file).tensor(name).clone();
}

}  // namespace

TEST(FtfyCli, a_mojibake_prompt_conditions_wan_as_its_clean_spelling_does) {
  SPDIT_SKIP_WITHOUT_SENTENCEPIECE();
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string dir = tmp.path + "/wan-tiny";
  pipelines::write_new_model(dir, {"wan", "tiny", 7});
  auto run = [&](const std::string& prompt, const std::string& dump) {
    auto r =
        run_command(std::string(SPDIT_BIN) + " run --model-dir " + dir + " --prompt '" + prompt +
                    "' --frames 5 --height 32 --width 32 --steps 1 --nproc 2 --ring 2"
                    " --check --dump " +
                    tmp.path + "/" + dump);
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
    return tensor_in(tmp.path + "/" + dump, "prompt_embeds");
  };
  // The bytes go to the shell single-quoted, as they are: "â€œ" is the
  // Windows-1252 mojibake of a left double quote, "Ã©" of "é"; U+FB01 is
  // "ﬁ"; U+FF32 U+FF25 U+FF24 "ＲＥＤ".
  const at::Tensor messy =
      run("\xc3\xa2\xe2\x82\xac\xc5\x93"
          "a \xef\xbc\xb2\xef\xbc\xa5\xef\xbc\xa4 "
          "fox\xc3\xa2\xe2\x82\xac\xc2\x9d on a caf\xc3\x83\xc2\xa9 "
          "\xef\xac\x81"
          "eld\r\n at dusk",
          "messy.safetensors");
  const at::Tensor clean = run("\"a RED fox\" on a caf\xc3\xa9 field at dusk", "clean.safetensors");
  const at::Tensor other = run("\"a RED fox\" on a cafe field at dusk", "other.safetensors");
  EXPECT_TRUE(at::equal(messy, clean));
  EXPECT_FALSE(at::equal(clean, other));
}
