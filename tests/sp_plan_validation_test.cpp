// validate_sp_plan: every rule of the reference, and spdit's extra ones,
// rejects a bad plan with a message naming the offending key.
#include <gtest/gtest.h>

#include "spdit/plan/sp_plan.h"

using namespace spdit;

namespace {

void expect_rejected(const SequenceParallelModelPlan& plan, const std::string& key_part,
                     const std::string& reason_part) {
  try {
    validate_sp_plan(plan);
    FAIL() << "plan was accepted:\n" << describe(plan);
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(key_part), std::string::npos) << m;
    EXPECT_NE(m.find(reason_part), std::string::npos) << m;
  }
}

SequenceParallelModelPlan reference_example() {
  return {
      {"", inputs({{"hidden_states", SequenceParallelInput{1, 3}},
                   {"encoder_hidden_states", SequenceParallelInput{1, 3}}})},
      {"pos_embed", inputs({{0, SequenceParallelInput(0, 2).with_split_output()}})},
      {"proj_out", outputs(SequenceParallelOutput{1, 3})},
  };
}

}  // namespace

TEST(ValidateSpPlan, TheReferenceExampleIsValid) {
  EXPECT_NO_THROW(validate_sp_plan(reference_example()));
}

TEST(ValidateSpPlan, GoodPlansOfEveryShapePass) {
  auto rope = SequenceParallelPartialInput(0, std::string("txt_ids"), 2).with_split_output();
  SequenceParallelModelPlan plan = {
      {"", inputs({{"x", SequenceParallelInput(1, 3).with_auto_pad()},
                   {"features",
                    std::vector<AnySpec>{SequenceParallelInput{1}, SequenceParallelInput{0}}}})},
      {"rope", inputs({{0, rope},
                       {1, SequenceParallelPartialInput(0, int64_t{77}, 2).with_split_output()}})},
      {"blocks.*", inputs({{"t", SequenceParallelInput{1, 3}}})},
      {"heads", outputs(std::vector<SequenceParallelOutput>{{1, 3}, {0}})},
      {"proj_out", outputs(SequenceParallelOutput{-2, 3})},
  };
  EXPECT_NO_THROW(validate_sp_plan(plan));
}

TEST(ValidateSpPlan, IntKeyWithoutSplitOutput) {
  expect_rejected({{"pos_embed", inputs({{0, SequenceParallelInput{0, 2}}})}},
                  "\"pos_embed\", key 0", "needs split_output=true");
}

TEST(ValidateSpPlan, SplitOutputUnderAParameterName) {
  expect_rejected(
      {{"pos_embed", inputs({{"ids", SequenceParallelInput(0, 2).with_split_output()}})}},
      "key \"ids\"", "integer output index");
}

TEST(ValidateSpPlan, OutputSpecAmongInputs) {
  expect_rejected({{"", inputs({{"x", SpecList(SequenceParallelOutput{1})}})}}, "key \"x\"",
                  "SequenceParallelOutput stands in an input map");
}

TEST(ValidateSpPlan, InputSpecAmongOutputs) {
  expect_rejected({{"proj_out", outputs(SpecList(SequenceParallelInput{1}))}}, "\"proj_out\"",
                  "input spec stands where outputs are gathered");
  expect_rejected({{"proj_out", outputs(SpecList(std::vector<AnySpec>{SequenceParallelOutput{1},
                                                                      SequenceParallelInput{1}}))}},
                  "\"proj_out\"[1]", "input spec");
}

TEST(ValidateSpPlan, TwoStars) {
  expect_rejected({{"blocks.*.sub.*", outputs(SequenceParallelOutput{1})}}, "blocks.*.sub.*",
                  "more than one '*'");
}

TEST(ValidateSpPlan, MalformedPaths) {
  expect_rejected({{"blocks..attn", outputs(SequenceParallelOutput{1})}}, "blocks..attn",
                  "empty path segment");
  expect_rejected({{"blocks.", outputs(SequenceParallelOutput{1})}}, "blocks.", "");
  expect_rejected({{"blocks.a*", outputs(SequenceParallelOutput{1})}}, "blocks.a*", "stand alone");
}

TEST(ValidateSpPlan, DuplicateKeys) {
  expect_rejected(
      {{"a", outputs(SequenceParallelOutput{1})}, {"a", outputs(SequenceParallelOutput{1})}},
      "\"a\"", "appears twice");
  expect_rejected(
      {{"", inputs({{"x", SequenceParallelInput{1}}, {"x", SequenceParallelInput{2}}})}},
      "key \"x\"", "appears twice");
}

TEST(ValidateSpPlan, DimsOutsideExpectedDims) {
  expect_rejected({{"", inputs({{"x", SequenceParallelInput{3, 3}}})}}, "key \"x\"",
                  "split_dim=3 is out of range for expected_dims=3");
  expect_rejected({{"out", outputs(SequenceParallelOutput{-4, 3})}}, "\"out\"", "gather_dim=-4");
  expect_rejected({{"", inputs({{"x", SequenceParallelInput{0, 0}}})}}, "key \"x\"",
                  "expected_dims=0 must be at least 1");
}

TEST(ValidateSpPlan, EmptyThings) {
  expect_rejected({}, "the plan", "empty");
  expect_rejected({{"", inputs({})}}, "root", "input map is empty");
  expect_rejected({{"", inputs({{"x", SpecList(std::vector<AnySpec>{})}})}}, "key \"x\"",
                  "spec list is empty");
  expect_rejected({{"", inputs({{"", SequenceParallelInput{1}}})}}, "key \"\"",
                  "parameter name is empty");
}

TEST(ValidateSpPlan, BadTextLenSource) {
  expect_rejected(
      {{"rope",
        inputs({{0, SequenceParallelPartialInput(0, int64_t{-1}, 2).with_split_output()}})}},
      "\"rope\", key 0", "must not be negative");
  expect_rejected(
      {{"rope",
        inputs({{0, SequenceParallelPartialInput(0, std::string(""), 2).with_split_output()}})}},
      "\"rope\", key 0", "empty parameter name");
}

TEST(ValidateSpPlan, NegativeOutputIndex) {
  expect_rejected(
      {{"rope", inputs({{int64_t{-1}, SequenceParallelInput(0, 2).with_split_output()}})}},
      "key -1", "must not be negative");
}

TEST(ValidateSpPlan, DescribeReadsLikeThePythonPlan) {
  auto text = describe(reference_example());
  EXPECT_NE(text.find("\"pos_embed\":\n    0: SequenceParallelInput(split_dim=0, expected_dims=2, "
                      "split_output=True)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\"proj_out\": SequenceParallelOutput(gather_dim=1, expected_dims=3)"),
            std::string::npos)
      << text;
}
