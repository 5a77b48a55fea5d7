// The mistakes a new user makes with a plan (issue 18): each must end in a
// clear error naming the entry, or in the right result; never in a silently
// wrong one. Models in support/user_models.h.
#include <gtest/gtest.h>

#include <type_traits>

#include "spdit/hooks/explain.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/plan/sp_config.h"
#include "spdit/runtime/error_message.h"
#include "support/env_scope.h"
#include "support/ranks.h"
#include "support/toy_models.h"
#include "support/user_models.h"

using namespace spdit;
using test::Mistake;

namespace {

template <typename Model>
at::Tensor run_single(Mistake m, const test::UserInputs& in) {
  Model model(m);
  test::seed_parameters(model, 21);
  return model->call({in.hidden, in.text}).tensor();
}

// Runs `m` under its plan on every rank; returns rank 0's output, or the
// message of the error every rank must throw.
template <typename Model>
std::pair<at::Tensor, std::string> run_sp(Mistake m, int u, int r, const test::UserInputs& in) {
  at::Tensor out;
  std::vector<std::string> errors(u * r);
  test::run_ranks(u * r, [&](World& w) {
    Model model(m);
    test::seed_parameters(model, 21);
    try {
      apply_sequence_parallel(*model, SequenceParallelConfig(u, r));
      auto y = model->call({in.hidden, in.text}).tensor();
      if (w.rank() == 0) out = y;
    } catch (const std::exception& e) {
      errors[w.rank()] = e.what();
    }
  });
  for (size_t i = 1; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i].empty(), errors[0].empty()) << "every rank fails alike: " << errors[i];
  }
  return {out, errors[0]};
}

void expect_error(const std::string& msg, std::initializer_list<const char*> parts) {
  ASSERT_FALSE(msg.empty()) << "expected an error";
  for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << p << "\n in: " << msg;
  EXPECT_EQ(msg.find("Exception raised from"), std::string::npos)
      << "no LibTorch backtrace: " << msg;
}

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

}  // namespace

TEST(PlanMistakes, RightPlansMatchOneRankInEveryLayout) {
  test::UserInputs in;
  for (int p : {2, 3, 4}) {
    for (auto [u, r] : test::factorizations(p)) {
      for (bool joint : {true, false}) {
        auto expected = joint ? run_single<test::JointDit>(Mistake::kNone, in)
                              : run_single<test::CrossDit>(Mistake::kNone, in);
        auto [y, err] = joint ? run_sp<test::JointDit>(Mistake::kNone, u, r, in)
                              : run_sp<test::CrossDit>(Mistake::kNone, u, r, in);
        ASSERT_TRUE(err.empty()) << err;
        ASSERT_EQ(y.sizes(), expected.sizes());
        EXPECT_LT(rel_err(y, expected), 1e-5) << u << "x" << r << (joint ? " joint" : " cross");
      }
    }
  }
}

TEST(PlanMistakes, SplittingTheJointTextFailsInEveryLayout) {
  test::UserInputs in;
  for (int p : {2, 4}) {
    for (auto [u, r] : test::factorizations(p)) {
      auto [y, err] = run_sp<test::JointDit>(Mistake::kSplitTextPadded, u, r, in);
      expect_error(err, {"JointText", "differs between the SP ranks", "never split",
                         "argument 'encoder_hidden_states'"});
    }
  }
}

TEST(PlanMistakes, SplittingTheTextWithoutPadSaysNotToSplitIt) {
  test::UserInputs in;
  auto [y, err] = run_sp<test::JointDit>(Mistake::kSplitTextUnpadded, 2, 1, in);
  expect_error(err,
               {"argument 'encoder_hidden_states'", "not divisible", "do not split it at all"});
}

TEST(PlanMistakes, SplittingTheCrossAttentionContextFails) {
  test::UserInputs in;
  for (auto [u, r] : {std::pair{2, 1}, std::pair{1, 2}, std::pair{2, 2}}) {
    auto [y, err] = run_sp<test::CrossDit>(Mistake::kSplitTextPadded, u, r, in);
    expect_error(err, {"skip_sp cross-attention", "differs between the SP ranks"});
  }
  // Text and image shards of the same length are caught too.
  test::UserInputs same(64, 64);
  auto [y, err] = run_sp<test::CrossDit>(Mistake::kSplitTextPadded, 2, 1, same);
  expect_error(err, {"differs between the SP ranks"});
}

TEST(PlanMistakes, ConcatenatingTextToTheShardFails) {
  test::UserInputs in;
  for (auto [u, r] : {std::pair{2, 1}, std::pair{1, 2}}) {
    auto [y, err] = run_sp<test::JointDit>(Mistake::kConcatText, u, r, in);
    expect_error(err, {"JointText", "received 157 tokens per rank", "128 (module"});
  }
  // On one rank the same model runs: the habit only fails under SP.
  EXPECT_EQ(run_single<test::JointDit>(Mistake::kConcatText, in).size(1), 15);
}

TEST(PlanMistakes, GatherOnTheWrongDimFailsNamingTheEntry) {
  test::UserInputs in;
  auto [y, err] = run_sp<test::JointDit>(Mistake::kGatherWrongDim, 2, 1, in);
  expect_error(err, {"module 'proj_out', output 0", "gather_dim=2", "shards of 128"});
}

TEST(PlanMistakes, ExpectedDimsThatSkipTheSplitGiveTheRightResult) {
  // The split is skipped, so nothing may be gathered: the output is the
  // whole sequence once (255 tokens), not P times.
  test::UserInputs in;
  auto expected = run_single<test::JointDit>(Mistake::kNone, in);
  for (auto [u, r] : {std::pair{2, 1}, std::pair{1, 2}}) {
    auto [y, err] = run_sp<test::JointDit>(Mistake::kExpectedDimsSkip, u, r, in);
    ASSERT_TRUE(err.empty()) << err;
    ASSERT_EQ(y.sizes(), expected.sizes());
    EXPECT_LT(rel_err(y, expected), 1e-5);
  }
}

TEST(PlanMistakes, ASplitSequenceNeverGatheredFails) {
  test::UserInputs in;
  auto [y, err] = run_sp<test::JointDit>(Mistake::kPoolSplitText, 2, 1, in);
  expect_error(err, {"no gather of this forward brought back whole",
                     "argument 'encoder_hidden_states': 29 tokens (padded to 30)"});
}

TEST(PlanMistakes, ARawShapeErrorCarriesTheDiagnosisWithoutBacktrace) {
  // No gather: the unpatchify's view meets a split sequence.
  test::UserInputs in;
  auto [y, err] = run_sp<test::JointDit>(Mistake::kNoGather, 2, 1, in);
  expect_error(err,
               {"is invalid for input of size", "state of this forward under the SP plan",
                "argument 'hidden_states': [1, 255, 8] -> [1, 128, 8] on dim 1 (padded 255 -> 256)",
                "the sequence is split across the ranks", "missing gather",
                "a size of 128 is this rank's shard, 255, 256 the whole sequence"});
}

TEST(PlanMistakes, AWholeSequenceTableMeetingAShardSaysWhichIsWhich) {
  // positions are not in the plan: their table (255 rows) meets the shard (128).
  test::UserInputs in;
  auto positions = at::arange(test::kImageTokens, at::kLong);
  std::string err;
  test::run_ranks(2, [&](World& w) {
    test::JointDit m(Mistake::kUnsplitTable);
    test::seed_parameters(m, 21);
    apply_sequence_parallel(*m, SequenceParallelConfig(2, 1));
    try {
      m->call({in.hidden, in.text, positions});
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      if (w.rank() == 0) err = e.what();
    }
  });
  expect_error(err, {"must match the size of tensor b (255)", "a size of 128 is this rank's shard",
                     "needs its own split (split_output"});
}

TEST(PlanMistakes, AGatherOnALayerThatCannotCarryHooksIsRejectedAtApply) {
  test::run_ranks(2, [&](World& w) {
    test::JointDit m(Mistake::kUnhookedGather);
    try {
      apply_sequence_parallel(*m, SequenceParallelConfig(2, 1));
      ADD_FAILURE() << "applied";
    } catch (const std::invalid_argument& e) {
      expect_error(e.what(), {"module 'plain_out'", "cannot carry hooks", "Hooked<>"});
    }
    EXPECT_FALSE(is_sequence_parallel_applied(*m));
  });
}

namespace {

// An embedder some configurations do not call (as Flux's guidance embedder).
struct WithOptionalImpl : HookableModule, DeclaresSpPlan {
  Hooked<torch::nn::Linear> embed, control, proj_out;
  bool optional;
  explicit WithOptionalImpl(bool opt)
      : embed(register_module("embed", torch::nn::Linear(8, 8))),
        control(register_module("control", torch::nn::Linear(8, 8))),
        proj_out(register_module("proj_out", torch::nn::Linear(8, 8))),
        optional(opt) {}
  std::vector<std::string> signature() const override { return {"x", "control"}; }
  SequenceParallelModelPlan sp_plan() const override {
    auto control_entry = inputs({{"input", SequenceParallelInput(1, 3)}});
    return {{"", inputs({{"x", SequenceParallelInput(1, 3)}})},
            {"control", optional ? optional_entry(control_entry) : control_entry},
            {"proj_out", outputs(SequenceParallelOutput(1, 3))}};
  }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto x = embed(a.tensor("x"));
    if (a.has("control")) x = x + control(a.tensor("control"));
    return Outputs(proj_out(x));
  }
};
TORCH_MODULE(WithOptional);

}  // namespace

TEST(PlanMistakes, AnEntryOnAModuleNotCalledSaysSoOrIsOptional) {
  auto x = at::randn({1, 6, 8}, at::detail::createCPUGenerator(3));
  auto c = at::randn({1, 6, 8}, at::detail::createCPUGenerator(4));
  WithOptional single(false);
  test::seed_parameters(single, 5);
  auto without = single->call({x}).tensor();
  auto with = single->call({x, c}).tensor();
  test::run_ranks(2, [&](World& w) {
    WithOptional strict(false), optional(true);
    test::seed_parameters(strict, 5);
    test::seed_parameters(optional, 5);
    apply_sequence_parallel(*strict, SequenceParallelConfig(2, 1));
    apply_sequence_parallel(*optional, SequenceParallelConfig(1, 2));
    try {
      strict->call({x});
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      expect_error(e.what(), {"[control]", "not called in this forward", "optional_entry"});
    }
    EXPECT_TRUE(at::allclose(strict->call({x, c}).tensor(), with, 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(optional->call({x}).tensor(), without, 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(optional->call({x, c}).tensor(), with, 1e-5, 1e-6));
  });
}

// The API refuses the constructions that invited mistakes, at compile time.
template <typename T, typename = void>
struct HasArrow : std::false_type {};
template <typename T>
struct HasArrow<T, std::void_t<decltype(std::declval<T&>().operator->())>> : std::true_type {};

TEST(PlanMistakes, TheApiRefusesAmbiguousConstructions) {
  // {1, true} would bind `true` to expected_dims.
  static_assert(!std::is_constructible_v<SequenceParallelInput, int, bool>);
  static_assert(std::is_constructible_v<SequenceParallelInput, int, int>);
  static_assert(!std::is_constructible_v<SequenceParallelOutput, int, bool>);
  static_assert(!std::is_constructible_v<SequenceParallelPartialInput, int, const char*, bool>);
  static_assert(std::is_constructible_v<SequenceParallelPartialInput, int, const char*, int>);
  // apply_sequence_parallel(model, 4) must not compile.
  static_assert(!std::is_convertible_v<int, SequenceParallelConfig>);
  // Hooked<> hands out no raw layer to call ->forward() on.
  static_assert(!HasArrow<Hooked<torch::nn::Linear>>::value);

  auto in = SequenceParallelInput(0, 2).with_split_output().with_auto_pad();
  EXPECT_EQ(in.split_dim, 0);
  EXPECT_EQ(in.expected_dims, 2);
  EXPECT_TRUE(in.split_output && in.auto_pad);
  in.auto_pad = false;  // plain fields still assignable
  EXPECT_FALSE(in.auto_pad);
  auto partial = SequenceParallelPartialInput(0, "txt_ids", 2).with_split_output();
  EXPECT_EQ(std::get<std::string>(partial.text_len_source), "txt_ids");
  EXPECT_TRUE(partial.split_output);
  EXPECT_EQ(SequenceParallelOutput(-2).with_expected_dims(3).expected_dims, 3);
}

TEST(PlanMistakes, RankModelsShareTheFirstModelsWeights) {
  // Built with LibTorch's default init, each model starts with other weights;
  // make_rank_models gives every one the first one's.
  auto models = make_rank_models(3, [] { return test::ExampleModel(16, 2); });
  ASSERT_EQ(models.size(), 3u);
  for (size_t i = 1; i < models.size(); ++i) {
    auto a = models[0]->parameters(), b = models[i]->parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) EXPECT_TRUE(at::equal(a[j], b[j]));
  }
  test::ExampleInputs in(12);
  auto expected = models[0]->call({in.hidden, in.context, in.positions}).tensor();
  test::run_ranks(3, [&](World& w) {
    auto& m = models[w.rank()];
    apply_sequence_parallel(*m, SequenceParallelConfig(1, 3));
    EXPECT_TRUE(at::allclose(m->call({in.hidden, in.context, in.positions}).tensor(), expected,
                             1e-5, 1e-6));
    remove_sequence_parallel(*m);
  });
  test::ExampleModel other(8, 1);
  EXPECT_THROW(copy_weights(*models[0], *other), std::invalid_argument);
}

TEST(PlanMistakes, UserMessagesCarryNoLibTorchBacktraceUnlessAsked) {
  try {
    at::zeros({2, 3}).matmul(at::zeros({4, 5}));
    ADD_FAILURE();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("Exception raised from"), std::string::npos)
        << "LibTorch's own message has the backtrace";
    EXPECT_EQ(error_message(e).find("Exception raised from"), std::string::npos);
    EXPECT_NE(error_message(e).find("cannot be multiplied (2x3 and 4x5)"), std::string::npos);
    test::EnvScope backtrace("SPDIT_BACKTRACE", "1");
    EXPECT_NE(error_message(e).find("Exception raised from"), std::string::npos);
  }
}

TEST(PlanMistakes, ExplainReportsAnyModelsPlanAndItsMistakes) {
  test::UserInputs in;
  auto build = [](Mistake m) {
    return [m] {
      test::JointDit model(m);
      test::seed_parameters(model, 21);
      return std::static_pointer_cast<HookableModule>(model.ptr());
    };
  };
  auto report = explain(build(Mistake::kNone), SequenceParallelConfig(2, 1), {in.hidden, in.text});
  EXPECT_TRUE(report.error.empty()) << report.error;
  ASSERT_EQ(report.splits.size(), 1u);
  EXPECT_EQ(report.splits[0].shard, 128);
  EXPECT_EQ(report.splits[0].padded, 256);
  ASSERT_EQ(report.gathers.size(), 1u);
  EXPECT_EQ(report.gathers[0].trimmed_to, 255);
  // Ulysses over 2: 4 exchanges of (1, 128, 2, 8) fp32 halves; the text heads
  // gathered; the 24-byte text fingerprint; the output gathered.
  EXPECT_EQ(report.bytes["all_to_all"].sent, 4 * 128 * 2 * 8 * 4 / 2);
  EXPECT_EQ(report.bytes["metadata"].sent, 24);
  EXPECT_EQ(report.bytes["all_gather"].sent, 29 * 1 * 8 * 4 + 128 * 4 * 4 + 128);
  const std::string text = report.describe();
  EXPECT_NE(
      text.find(
          "argument 'hidden_states': [1, 255, 8] -> [1, 128, 8] on dim 1 (padded 255 -> 256)"),
      std::string::npos)
      << text;
  auto wrong =
      explain(build(Mistake::kSplitTextPadded), SequenceParallelConfig(1, 2), {in.hidden, in.text});
  EXPECT_NE(wrong.error.find("differs between the SP ranks"), std::string::npos) << wrong.error;
  EXPECT_NE(wrong.describe().find("error: "), std::string::npos);
}
