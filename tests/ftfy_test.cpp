// spdit::text::fix_text (the C++ port of ftfy.fix_text) against ftfy 6.3.1
// itself: tests/fixtures/ftfy/cases.json holds (input, ftfy.fix_text(input))
// for every case of ftfy's own tests/test-cases/*.json and for prompt-like
// cases of ours (400 random mojibake in ten codecs, 150 random strings of
// mojibake characters, seeded), each also with Wan2.1's prompt_clean, written
// by scripts/reference/ftfy_reference.py.
#include "spdit/text/ftfy.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "spdit/pipelines/wan_prompt_encoder.h"

using spdit::text::fix_text;

namespace {

nlohmann::json cases() {
  std::ifstream in(std::string(SPDIT_FIXTURES) + "/ftfy/cases.json");
  EXPECT_TRUE(in.good()) << "tests/fixtures/ftfy/cases.json is missing";
  return nlohmann::json::parse(in);
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// Cases where the port and ftfy differ, with why. Empty: every case matches.
const std::set<std::string> kKnownDifferences = {};

}  // namespace

TEST(Ftfy, EveryFixtureCaseMatchesFtfy) {
  const auto all = cases();
  ASSERT_GT(all.size(), 600u);
  size_t compared = 0;
  size_t repaired = 0;  // cases where ftfy changes the text: the fixture is no identity test
  for (const auto& c : all) {
    const std::string label = c["label"];
    const std::string input = c.contains("input_hex") ? from_hex(c["input_hex"].get<std::string>())
                                                      : c["input"].get<std::string>();
    const std::string expected = c["fixed"];
    const std::string got = fix_text(input);
    if (kKnownDifferences.count(label)) {
      EXPECT_NE(got, expected) << label << " matches now: take it off the known differences";
      continue;
    }
    EXPECT_EQ(got, expected) << label;
    ++compared;
    if (expected != input) ++repaired;
  }
  EXPECT_GE(compared, all.size() - kKnownDifferences.size());
  EXPECT_GT(repaired, 400u);
}

TEST(Ftfy, PromptLikeRepairs) {
  // A few by hand, so a reader sees what it does (the fixture has the rest).
  EXPECT_EQ(fix_text("\xE2\x80\x9C"
                     "curly"
                     "\xE2\x80\x9D"),
            "\"curly\"");
  EXPECT_EQ(fix_text("caf\xC3\x83\xC2\xA9"), "caf\xC3\xA9");  // "cafÃ©" -> "café"
  EXPECT_EQ(fix_text("\xEF\xAC\x81sh"), "fish");              // "ﬁsh"
  EXPECT_EQ(fix_text("a\r\nb"), "a\nb");
  EXPECT_EQ(fix_text("\x1B[31mred\x1B[0m"), "red");
  EXPECT_EQ(fix_text("Tom &amp; Jerry"), "Tom & Jerry");
  EXPECT_EQ(fix_text("<b>&amp;</b>"), "<b>&amp;</b>");  // HTML stays HTML
  EXPECT_EQ(fix_text(""), "");
}

TEST(Ftfy, LongLinesAreFixedWhole) {
  // 240,000 characters on one line, and 50,000 mojibake pairs in a row (one
  // UTF8_DETECTOR_RE match): ftfy fixes both (checked with ftfy 6.3.1); PCRE2
  // must not run out of stack on them.
  std::string messy, clean, pairs, e_acute;
  for (int i = 0; i < 20000; ++i) {
    messy += "caf\xC3\x83\xC2\xA9 \xC3\xA2\xE2\x82\xAC\xC5\x93ok\xC3\xA2\xE2\x82\xAC\xC2\x9D ";
    clean += "caf\xC3\xA9 \"ok\" ";
  }
  for (int i = 0; i < 50000; ++i) pairs += "\xC3\x83\xC2\xA9", e_acute += "\xC3\xA9";
  EXPECT_EQ(fix_text(messy), clean);
  EXPECT_EQ(fix_text(pairs), e_acute);
}

TEST(Ftfy, MalformedUtf8BecomesReplacementCharacters) {
  // As Python's bytes.decode("utf-8", errors="replace"): one U+FFFD per
  // maximal ill-formed subsequence, then fixed like any text.
  EXPECT_EQ(fix_text("a\xFF"
                     "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(fix_text("a\xE2\x80"
                     "b"),
            "a\xEF\xBF\xBD"
            "b");                                               // truncated 3-byte
  EXPECT_EQ(fix_text("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: 2 errors
  EXPECT_EQ(fix_text("x\xF0\x9F\x98"), "x\xEF\xBF\xBD");        // cut at the end
}

TEST(Ftfy, WanPromptCleanMatchesWansOnEveryFixtureCase) {
  size_t compared = 0;
  for (const auto& c : cases()) {
    const std::string label = c["label"];
    const std::string input = c.contains("input_hex") ? from_hex(c["input_hex"].get<std::string>())
                                                      : c["input"].get<std::string>();
    EXPECT_EQ(spdit::pipelines::wan_prompt_clean(input), c["wan_prompt_clean"].get<std::string>())
        << label;
    ++compared;
  }
  EXPECT_GT(compared, 600u);
}

TEST(Ftfy, WanPromptCleanRunsFtfyFirst) {
  // Wan's basic_clean: ftfy.fix_text, html.unescape twice, strip; then
  // whitespace_clean (Python's \s, which includes U+00A0 and U+3000).
  using spdit::pipelines::wan_prompt_clean;
  EXPECT_EQ(wan_prompt_clean("  \xE2\x80\x9C"
                             "A caf\xC3\x83\xC2\xA9\xE2\x80\x9D\r\n at  dusk "),
            "\"A caf\xC3\xA9\" at dusk");
  EXPECT_EQ(wan_prompt_clean("\xEF\xBC\xA1\xE3\x80\x80\xEF\xBC\xA2"), "A B");  // "Ａ　Ｂ"
  EXPECT_EQ(wan_prompt_clean("a\xC2\xA0\xC2\xA0"
                             "b"),
            "a b");  // no-break spaces
}
