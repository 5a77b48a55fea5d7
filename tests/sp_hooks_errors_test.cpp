// Bad plans and bad inputs: a clear error, and no half-applied state.
#include <gtest/gtest.h>

#include "spdit/hooks/sequence_parallel.h"
#include "support/ranks.h"
#include "support/subprocess.h"
#include "support/toy_models.h"

using namespace spdit;
using test::ExampleInputs;

namespace {

bool no_hooks_anywhere(test::ExampleModel& m) {
  if (!HookRegistry::names(*m).empty()) return false;
  for (auto& child : m->modules(/*include_self=*/false)) {
    if (!HookRegistry::names(*child).empty()) return false;
  }
  return true;
}

using test::error_of;

}  // namespace

TEST(SpHooksErrors, UnknownModulePathNamesItAndAppliesNothing) {
  test::run_ranks(2, [](World& w) {
    auto m = test::make_example_model();
    SequenceParallelModelPlan plan = {
        {"", inputs({{"hidden_states", SequenceParallelInput{1, 3}}})},
        {"proj_outt", outputs(SequenceParallelOutput{1, 3})}};
    auto msg = error_of([&] { apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, plan); });
    EXPECT_NE(msg.find("\"proj_outt\" names no module"), std::string::npos) << msg;
    EXPECT_NE(msg.find("proj_out"), std::string::npos) << msg;
    EXPECT_FALSE(is_sequence_parallel_applied(*m));
    EXPECT_TRUE(no_hooks_anywhere(m));
  });
}

TEST(SpHooksErrors, UnknownParameterNamesTheSignature) {
  test::run_ranks(2, [](World& w) {
    auto m = test::make_example_model();
    SequenceParallelModelPlan plan = {{"", inputs({{"hidden", SequenceParallelInput{1, 3}}})},
                                      {"proj_out", outputs(SequenceParallelOutput{1, 3})}};
    auto msg = error_of([&] { apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, plan); });
    EXPECT_NE(msg.find("parameter 'hidden': no such parameter"), std::string::npos) << msg;
    EXPECT_NE(msg.find("hidden_states, encoder_hidden_states, positions"), std::string::npos)
        << msg;
    EXPECT_TRUE(no_hooks_anywhere(m));
  });
}

TEST(SpHooksErrors, StarOverAModuleWithoutChildren) {
  test::run_ranks(1, [](World& w) {
    auto m = test::make_example_model();
    SequenceParallelModelPlan plan = {{"proj_out.*", outputs(SequenceParallelOutput{1})}};
    auto msg = error_of([&] { apply_sequence_parallel(*m, SequenceParallelConfig{1, 1}, plan); });
    EXPECT_NE(msg.find("expands to nothing"), std::string::npos) << msg;
  });
}

TEST(SpHooksErrors, ApplyingTwiceIsAnErrorAndTheFirstPlanStillWorks) {
  ExampleInputs in(8);
  auto single = test::make_example_model();
  auto expected = single->call({in.hidden, in.context, in.positions}).tensor();
  test::run_ranks(2, [&](World& w) {
    auto m = test::make_example_model();
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1});
    auto msg = error_of([&] { apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}); });
    EXPECT_NE(msg.find("already has an SP plan applied"), std::string::npos) << msg;
    auto y = m->call({in.hidden, in.context, in.positions}).tensor();
    EXPECT_LE((y - expected).abs().max().item<double>(), 1e-6) << "split once, not twice";
  });
}

TEST(SpHooksErrors, IndivisibleLengthWithoutAutoPadNamesModuleArgumentLengthAndSize) {
  test::run_ranks(4, [](World& w) {
    auto m = test::make_example_model(/*auto_pad=*/false);
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 2});
    ExampleInputs in(10);
    auto msg = error_of([&] { m->call({in.hidden, in.context, in.positions}); });
    EXPECT_NE(msg.find("module '\"\" (root)', argument 'hidden_states'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("length 10"), std::string::npos) << msg;
    EXPECT_NE(msg.find("SP size 4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("auto_pad"), std::string::npos) << msg;
  });
}

TEST(SpHooksErrors, LengthShorterThanTheSpSize) {
  test::run_ranks(4, [](World& w) {
    auto m = test::make_example_model(/*auto_pad=*/true);
    apply_sequence_parallel(*m, SequenceParallelConfig{4, 1});
    ExampleInputs in(3);
    auto msg = error_of([&] { m->call({in.hidden, in.context, in.positions}); });
    EXPECT_NE(msg.find("length 3 along dim 1 is shorter than the SP size 4"), std::string::npos)
        << msg;
  });
}

TEST(SpHooksErrors, WrongNumberOfDimsAndSplitDimOutOfRange) {
  test::run_ranks(2, [](World& w) {
    auto m = test::make_example_model();
    // No expected_dims: a 2-d tensor cannot be split on dim 2.
    SequenceParallelModelPlan plan = {{"", inputs({{"hidden_states", SequenceParallelInput{2}}})},
                                      {"proj_out", outputs(SequenceParallelOutput{1, 3})}};
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, plan);
    auto msg = error_of([&] { m->call({at::randn({4, 8})}, {{"positions", at::arange(4)}}); });
    EXPECT_NE(msg.find("split_dim=2 is out of range for a tensor of shape [4, 8]"),
              std::string::npos)
        << msg;
    remove_sequence_parallel(*m);
    EXPECT_TRUE(no_hooks_anywhere(m));
  });
}

TEST(SpHooksErrors, UnknownArgumentAtTheCallSite) {
  auto m = test::make_example_model();
  auto msg = error_of([&] { m->call({}, {{"hiden_states", at::randn({1, 2, 8})}}); });
  EXPECT_NE(msg.find("has no parameter 'hiden_states'"), std::string::npos) << msg;
  msg = error_of([&] {
    m->call({at::randn({1, 2, 8})}, {{"hidden_states", at::randn({1, 2, 8})}});
  });
  EXPECT_NE(msg.find("twice"), std::string::npos) << msg;
}

TEST(SpHooksErrors, ModelWithoutAPlan) {
  test::run_ranks(1, [](World& w) {
    torch::nn::Linear lin(2, 2);
    auto msg = error_of([&] { apply_sequence_parallel(*lin, SequenceParallelConfig{1, 1}); });
    EXPECT_NE(msg.find("declares no sp_plan"), std::string::npos) << msg;
  });
}

TEST(SpHooksErrors, RemoveRestoresTheModelExactly) {
  test::run_ranks(2, [](World& w) {
    auto m = test::make_example_model();
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1});
    EXPECT_FALSE(no_hooks_anywhere(m));
    remove_sequence_parallel(*m);
    EXPECT_TRUE(no_hooks_anywhere(m));
    remove_sequence_parallel(*m);                               // a second remove is harmless
    apply_sequence_parallel(*m, SequenceParallelConfig{1, 2});  // and it can be applied again
    EXPECT_TRUE(is_sequence_parallel_applied(*m));
  });
}
