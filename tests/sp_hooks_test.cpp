// apply_sequence_parallel / remove_sequence_parallel on P ranks (threads):
// the SP output equals the single-rank output of the same model and inputs.
#include <gtest/gtest.h>

#include "spdit/hooks/forward_context.h"
#include "spdit/hooks/sequence_parallel.h"
#include "support/ranks.h"
#include "support/toy_models.h"

using namespace spdit;
using test::ExampleInputs;

namespace {

at::Tensor run_example(test::ExampleModel& m, const ExampleInputs& in) {
  return m->call({in.hidden, in.context, in.positions}).tensor();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Shards each rank sees for a plan split of `s` tokens on `p` ranks.
void expect_example_parity(int p, int64_t s, bool auto_pad) {
  ExampleInputs in(s);
  auto single_model = test::make_example_model(auto_pad);
  auto expected = run_example(single_model, in);
  test::run_ranks(p, [&](World& w) {
    auto model = test::make_example_model(auto_pad);
    apply_sequence_parallel(*model, SequenceParallelConfig{p, 1});
    auto out = run_example(model, in);
    ASSERT_EQ(out.sizes(), expected.sizes()) << "P=" << p << " S=" << s;
    EXPECT_LE(max_abs_diff(out, expected), 1e-6) << "P=" << p << " S=" << s;
    remove_sequence_parallel(*model);
    EXPECT_FALSE(is_sequence_parallel_applied(*model));
    auto unsplit = run_example(model, in);
    EXPECT_TRUE(at::equal(unsplit, expected)) << "after remove, the model must run unsplit";
  });
}

class SpHooks : public ::testing::TestWithParam<int> {};

}  // namespace

TEST_P(SpHooks, ReferenceExampleMatchesSingleRankWhenLengthDivides) {
  expect_example_parity(GetParam(), 24, /*auto_pad=*/false);
}

TEST_P(SpHooks, AutoPadMatchesSingleRankWhenLengthDoesNotDivide) {
  const int p = GetParam();
  for (int64_t s : {13, 17}) {
    if (s % p == 0) continue;
    expect_example_parity(p, s, /*auto_pad=*/true);
  }
}

TEST_P(SpHooks, EachRankHoldsItsShardInsideTheModel) {
  const int p = GetParam();
  const int64_t s = 8 * p;
  ExampleInputs in(s);
  test::run_ranks(p, [&](World& w) {
    auto model = test::make_example_model();
    apply_sequence_parallel(*model, SequenceParallelConfig{1, p});
    at::Tensor seen;
    bool active = false;
    HookRegistry::add(*model->blocks[0], Hook{"probe",
                                              [&](BoundArgs& a) {
                                                seen = a.tensor("x");
                                                active = ForwardContext::current()->sp_active();
                                              },
                                              nullptr});
    run_example(model, in);
    EXPECT_EQ(seen.size(1), s / p);
    EXPECT_TRUE(active);
    HookRegistry::remove(*model->blocks[0], "probe");
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, SpHooks, ::testing::Values(1, 2, 3, 4, 8));

// --- PartialInput: [text, image] where text stays whole ---------------------

namespace {

struct JointRopeImpl : HookableModule {
  std::vector<std::string> signature() const override { return {"txt_ids", "img_ids"}; }

 protected:
  Outputs forward(const BoundArgs& a) override {
    auto ids = at::cat({a.tensor("txt_ids"), a.tensor("img_ids")}, 0).to(at::kFloat);
    return Outputs(at::stack({ids, ids * 10}, 1));  // (T + I, 2)
  }
};
TORCH_MODULE(JointRope);

struct JointModelImpl : HookableModule {
  JointRope rope{nullptr};
  SequenceParallelPartialInput spec;
  explicit JointModelImpl(SequenceParallelPartialInput s) : spec(std::move(s)) {
    rope = register_module("rope", JointRope());
  }
  std::vector<std::string> signature() const override { return {"txt_ids", "img_ids"}; }

 protected:
  Outputs forward(const BoundArgs& a) override { return rope->call({a["txt_ids"], a["img_ids"]}); }
};
TORCH_MODULE(JointModel);

void expect_partial_split(int p, SequenceParallelPartialInput spec) {
  const int64_t t = 5, i = 4 * p;
  auto txt = at::arange(t, at::kLong);
  auto img = at::arange(100, 100 + i, at::kLong);
  test::run_ranks(p, [&](World& w) {
    JointModel model(spec);
    SequenceParallelModelPlan plan = {{"rope", inputs({{0, spec}})}};
    SequenceParallelConfig cfg{p, 1};
    cfg.setup(w);
    // No gather in this plan: look at the rope output from inside the call.
    at::Tensor got;
    std::optional<int64_t> text_len;
    HookRegistry::add(*model, Hook{"peek", nullptr, [&](const BoundArgs&, Outputs& o) {
                                     got = o[0].tensor();
                                     text_len = ForwardContext::current()->text_len;
                                     ForwardContext::current()->set_sp_active(false);
                                   }});
    apply_sequence_parallel(*model, cfg, plan);
    // The peek ran; then the end-of-forward check refuses a split never gathered.
    EXPECT_THROW(model->call({txt, img}), std::runtime_error);
    auto ids = got.select(1, 0).to(at::kLong);
    ASSERT_EQ(ids.size(0), t + i / p);
    EXPECT_TRUE(at::equal(ids.narrow(0, 0, t), txt)) << "text part stays whole";
    EXPECT_TRUE(at::equal(ids.narrow(0, t, i / p), img.narrow(0, w.rank() * (i / p), i / p)));
    EXPECT_EQ(text_len, t);
    remove_sequence_parallel(*model);
    HookRegistry::remove(*model, "peek");
  });
}

}  // namespace

TEST(SpHooksPartialInput, TextLengthFromANamedTensorArgument) {
  for (int p : {1, 2, 4}) {
    expect_partial_split(
        p, SequenceParallelPartialInput(0, std::string("txt_ids"), 2).with_split_output());
  }
}

TEST(SpHooksPartialInput, TextLengthFromAnInt) {
  for (int p : {2, 3})
    expect_partial_split(p, SequenceParallelPartialInput(0, int64_t{5}, 2).with_split_output());
}

// --- lists, expected_dims, `*`, plain layers --------------------------------

namespace {

struct ListModelImpl : HookableModule {
  Hooked<torch::nn::Identity> out;
  ListModelImpl() : out(register_module("out", torch::nn::Identity())) {}
  std::vector<std::string> signature() const override { return {"features", "scale"}; }

 protected:
  Outputs forward(const BoundArgs& a) override {
    const auto& f = a["features"].tensor_list();
    // features[0]: (B, S, C) split on 1; features[1]: (S, C) split on 0.
    return Outputs(out(f[0] * a["scale"].to_double() + f[1].unsqueeze(0)));
  }
};
TORCH_MODULE(ListModel);

}  // namespace

TEST(SpHooks, ListOfTensorsIsSplitElementwise) {
  auto a = at::randn({2, 12, 3}), b = at::randn({12, 3});
  auto expected = a * 2.0 + b.unsqueeze(0);
  for (int p : {2, 3, 4}) {
    test::run_ranks(p, [&](World& w) {
      ListModel m;
      SequenceParallelModelPlan plan = {
          {"", inputs({{"features", std::vector<AnySpec>{SequenceParallelInput{1, 3},
                                                         SequenceParallelInput{0, 2}}}})},
          {"out", outputs(SequenceParallelOutput{1, 3})}};
      apply_sequence_parallel(*m, SequenceParallelConfig{1, p}, plan);
      auto y = m->call({std::vector<at::Tensor>{a, b}}, {{"scale", 2.0}}).tensor();
      EXPECT_TRUE(at::allclose(y, expected));
      // A list of the wrong length is an error naming the argument.
      try {
        m->call({std::vector<at::Tensor>{a}}, {{"scale", 2.0}});
        ADD_FAILURE();
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("argument 'features'"), std::string::npos) << e.what();
      }
    });
  }
}

// A skip by expected_dims is the plan's intent and not warned; nothing that was
// not split is gathered; a forward in which every split was skipped says so once.
TEST(SpHooks, ExpectedDimsMismatchSkipsAndSaysOnceWhenNothingWasSplit) {
  // Ranks are threads of one process here, so "once" is once for all of them.
  ::testing::internal::CaptureStderr();
  test::run_ranks(2, [&](World& w) {
    ListModel m;
    SequenceParallelModelPlan plan = {
        {"",
         inputs({{"features", std::vector<AnySpec>{SequenceParallelInput{1, 4},       // 3-d given
                                                   SequenceParallelInput{0, 3}}}})},  // 2-d given
        {"out", outputs(SequenceParallelOutput{1, 4})}};
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, plan);
    auto a = at::randn({2, 6, 3}), b = at::randn({6, 3});
    auto y = m->call({std::vector<at::Tensor>{a, b}}, {{"scale", 1.0}}).tensor();
    auto y2 = m->call({std::vector<at::Tensor>{a, b}}, {{"scale", 1.0}}).tensor();
    EXPECT_TRUE(at::allclose(y, a + b.unsqueeze(0))) << "nothing split, nothing gathered";
    EXPECT_TRUE(at::allclose(y2, y));
  });
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("split nothing in this forward"), std::string::npos) << err;
  EXPECT_NE(err.find("argument 'features'[0] (3 dims, expected_dims 4)"), std::string::npos) << err;
  size_t first = err.find("features'[0]");
  EXPECT_EQ(err.find("features'[0]", first + 1), std::string::npos) << "warned once: " << err;
}

namespace {

struct BranchImpl : HookableModule {
  Hooked<torch::nn::Linear> proj;
  BranchImpl() : proj(register_module("proj", torch::nn::Linear(4, 4))) {}
  std::vector<std::string> signature() const override { return {"x"}; }

 protected:
  Outputs forward(const BoundArgs& a) override { return Outputs(proj(a.tensor("x"))); }
};
TORCH_MODULE(Branch);

struct BranchesImpl : HookableModule {
  torch::nn::ModuleList branches;
  bool bypass = false;
  BranchesImpl() {
    branches = register_module("branches", torch::nn::ModuleList());
    for (int i = 0; i < 3; ++i) branches->push_back(Branch());
  }
  std::vector<std::string> signature() const override { return {"x"}; }

 protected:
  Outputs forward(const BoundArgs& a) override {
    at::Tensor sum = at::zeros_like(a.tensor("x"));
    for (size_t i = 0; i < branches->size(); ++i) {
      auto* b = branches[i]->as<BranchImpl>();
      sum = sum + (bypass && i == 2 ? b->proj.module()->forward(a.tensor("x"))
                                    : b->call({a["x"]}).tensor());
    }
    return Outputs(sum);
  }
};
TORCH_MODULE(Branches);

SequenceParallelModelPlan branches_plan() {
  return {{"branches.*", inputs({{"x", SequenceParallelInput{1, 3}}})},
          {"branches.*.proj", outputs(SequenceParallelOutput{1, 3})}};
}

}  // namespace

TEST(SpHooks, StarExpandsOverEveryChildOfAModuleList) {
  auto x = at::randn({1, 8, 4});
  Branches single;
  test::seed_parameters(single, 3);
  auto expected = single->call({x}).tensor();
  EXPECT_EQ(resolve_plan_path(*single, "branches.*.proj"),
            (std::vector<std::string>{"branches.0.proj", "branches.1.proj", "branches.2.proj"}));
  test::run_ranks(4, [&](World& w) {
    Branches m;
    test::seed_parameters(m, 3);
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 2}, branches_plan());
    EXPECT_EQ(HookRegistry::names(*m->branches[1]->as<BranchImpl>()->proj.module().ptr()),
              (std::vector<std::string>{"spdit.sp_plan:branches.1.proj"}));
    EXPECT_LE((m->call({x}).tensor() - expected).abs().max().item<double>(), 1e-6);
  });
}

TEST(SpHooks, CallingAPlannedModuleAroundItsHooksIsAnError) {
  test::run_ranks(2, [&](World& w) {
    Branches m;
    m->bypass = true;
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, branches_plan());
    try {
      m->call({at::randn({1, 8, 4})});
      ADD_FAILURE();
    } catch (const std::runtime_error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("branches.2.proj"), std::string::npos) << msg;
      EXPECT_NE(msg.find("(->forward())"), std::string::npos) << msg;
    }
  });
}

TEST(SpHooks, PlainLayerAsInputSplitTarget) {
  // The Linear x_embed splits its own `input`; the plan never touches the root.
  ExampleInputs in(12);
  auto single = test::make_example_model();
  auto expected = single->call({in.hidden}, {{"positions", in.positions}}).tensor();
  test::run_ranks(3, [&](World& w) {
    auto m = test::make_example_model();
    SequenceParallelModelPlan plan = {
        {"x_embed", inputs({{"input", SequenceParallelInput{1, 3}}})},
        {"pos_embed", inputs({{0, SequenceParallelInput(0, 2).with_split_output()}})},
        {"proj_out", outputs(SequenceParallelOutput{1, 3})}};
    apply_sequence_parallel(*m, SequenceParallelConfig{3, 1}, plan);
    auto y = m->call({in.hidden}, {{"positions", in.positions}}).tensor();
    EXPECT_LE((y - expected).abs().max().item<double>(), 1e-6);
  });
}

TEST(SpHooks, OutputCountMismatchIsAnError) {
  test::run_ranks(2, [&](World& w) {
    auto m = test::make_example_model();
    SequenceParallelModelPlan plan = {
        {"", inputs({{"hidden_states", SequenceParallelInput{1, 3}}})},
        {"pos_embed", outputs(std::vector<SequenceParallelOutput>{{0}, {0}, {0}})},
        {"proj_out", outputs(SequenceParallelOutput{1, 3})}};
    apply_sequence_parallel(*m, SequenceParallelConfig{2, 1}, plan);
    ExampleInputs in(8);
    try {
      m->call({in.hidden}, {{"positions", in.positions}});
      ADD_FAILURE();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("gathers 3 output(s) but the module returned 2"),
                std::string::npos)
          << e.what();
    }
  });
}
