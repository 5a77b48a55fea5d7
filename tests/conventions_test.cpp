// Conventions of the reference models that a user passing the usual values
// relies on (issue 11): Wan's text padded to text_len inside the model, Wan's
// text limit, Flux's guidance required when it has an embedder, Flux's
// position ids batched or not.
#include <gtest/gtest.h>

#include "spdit/models/flux.h"
#include "spdit/models/layers.h"
#include "spdit/models/wan.h"

using namespace spdit;
using namespace spdit::models;

TEST(Conventions, WanPadsTextToTextLenAsTheOriginalDoes) {
  WanTransformer wan(WanConfig::preset("tiny"));
  seeded_init(*wan, 8);
  auto gen = at::detail::createCPUGenerator(9);
  auto video = at::randn({1, 16, 1, 8, 8}, gen);
  auto text = at::randn({1, 7, 32}, gen);
  auto t = at::full({1}, 700.0);
  auto padded = at::cat({text, at::zeros({1, 512 - 7, 32})}, 1);
  auto a = wan->call({video, t, text}).tensor();
  auto b = wan->call({video, t, padded}).tensor();
  EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-6)) << "7 tokens are padded to 512 inside the model";
  // A padded row embeds to a non-zero vector: without the padding the result differs.
  WanConfig c = WanConfig::preset("tiny");
  c.text_len = 7;
  WanTransformer unpadded(c);
  seeded_init(*unpadded, 8);
  EXPECT_FALSE(at::allclose(unpadded->call({video, t, text}).tensor(), a, 1e-4, 1e-5));
  try {
    wan->call({video, t, at::randn({1, 513, 32})});
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("at most 512 text tokens"), std::string::npos) << e.what();
  }
}

TEST(Conventions, FluxNeedsGuidanceWhenItHasAnEmbedderAndTakesBatchedIds) {
  auto c = FluxConfig::preset("tiny");
  FluxTransformer flux(c);
  seeded_init(*flux, 10);
  auto gen = at::detail::createCPUGenerator(11);
  auto x = at::randn({1, 20, c.in_channels}, gen);
  auto txt = at::randn({1, 7, c.text_dim}, gen);
  auto pooled = at::randn({1, c.pooled_dim}, gen);
  auto img_ids = at::zeros({20, 3}, at::kLong);
  img_ids.select(1, 1).copy_(at::arange(20) / 5);
  img_ids.select(1, 2).copy_(at::arange(20) % 5);
  auto txt_ids = at::zeros({7, 3}, at::kLong);
  std::vector<Kwarg> args = {{"encoder_hidden_states", txt},
                             {"pooled_projections", pooled},
                             {"timestep", at::full({1}, 0.7)},
                             {"img_ids", img_ids},
                             {"txt_ids", txt_ids}};
  try {
    flux->call({x}, args);
    ADD_FAILURE() << "no guidance, no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("pass `guidance`"), std::string::npos) << e.what();
  }
  args.push_back({"guidance", at::full({1}, 3.5)});
  auto flat = flux->call({x}, args).tensor();
  args[3] = {"img_ids", img_ids.unsqueeze(0)};
  args[4] = {"txt_ids", txt_ids.unsqueeze(0)};
  EXPECT_TRUE(at::equal(flux->call({x}, args).tensor(), flat)) << "(B, S, 3) ids as (S, 3)";
  args[3] = {"img_ids", img_ids.narrow(1, 0, 2)};
  EXPECT_THROW(flux->call({x}, args), std::invalid_argument);
}
