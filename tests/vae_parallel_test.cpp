// Parallel decode by row bands (vae/row_bands.h): the bands put together are
// the one-rank decode, for every rank count and heights that do and do not
// divide by it; the pieces (halo, group norm, banded attention) alone; and the
// mistakes a caller can make.
#include <gtest/gtest.h>

#include <mutex>

#include "spdit/runtime/comm_counters.h"
#include "spdit/vae/autoencoder_kl.h"
#include "spdit/vae/row_bands.h"
#include "spdit/vae/vae_loader.h"
#include "spdit/vae/vae_writer.h"
#include "spdit/vae/wan_vae.h"
#include "spdit/vae/wan_vae_loader.h"
#include "support/ranks.h"
#include "support/temp_dir.h"

namespace spdit {
namespace {

using vae::AutoencoderKL;
using vae::AutoencoderKLConfig;

// Three levels (two upsamples), 8 groups of 4 channels at the top, the mid
// block's attention: every kind of banded layer, at a size a test can afford.
AutoencoderKLConfig banded_test_config() {
  AutoencoderKLConfig c;
  c.block_out_channels = {16, 32, 32};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.latent_channels = 4;
  return c;
}

AutoencoderKL random_autoencoder(const AutoencoderKLConfig& c, at::ScalarType dtype = at::kFloat) {
  static test::TempDir dir;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  const std::string path = dir.path + "/vae-" + std::to_string(c.block_out_channels.size());
  vae::write_random_autoencoder(path, c, /*seed=*/3);
  return vae::load_autoencoder(path, dtype).model;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(RowBands, RowsSplitAsEvenlyAsPossible) {
  EXPECT_EQ(vae::band_rows(7, 3), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(vae::band_rows(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(vae::band_rows(2, 4), (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_THROW(vae::band_rows(4, 0), std::invalid_argument);
}

TEST(RowBands, HaloIsTheNeighboursRowsAndZerosAtTheEdges) {
  const at::Tensor x = at::arange(2 * 7 * 3, at::kFloat).view({1, 2, 7, 3});
  test::run_ranks(3, [&](World& w) {
    SequenceParallelConfig cfg{1, 3};
    cfg.setup(w);
    vae::RowBandScope bands(cfg);
    const auto rows = vae::band_rows(7, 3);
    const int64_t start = w.rank() == 0 ? 0 : w.rank() == 1 ? 3 : 5;
    const at::Tensor mine = vae::take_band(bands, x, 2);
    ASSERT_EQ(mine.size(2), rows[w.rank()]);
    const at::Tensor padded = at::constant_pad_nd(x, {0, 0, 1, 1}, 0);
    const at::Tensor expected = padded.narrow(2, start, rows[w.rank()] + 2);
    EXPECT_TRUE(at::equal(vae::with_halo(bands, mine, 2, 1), expected)) << "rank " << w.rank();
    EXPECT_TRUE(at::equal(vae::gather_bands(bands, mine, 2), x));
  });
}

TEST(RowBands, GroupNormOfBandsIsTheWholeImagesGroupNorm) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({2, 8, 9, 5}) * 3 + 1;
  const at::Tensor weight = at::randn({8}), bias = at::randn({8});
  const at::Tensor whole = at::group_norm(x, 4, weight, bias, 1e-6);
  for (int p : {2, 3, 4}) {
    test::run_ranks(p, [&](World& w) {
      SequenceParallelConfig cfg{1, p};
      cfg.setup(w);
      vae::RowBandScope bands(cfg);
      const at::Tensor mine =
          vae::banded_group_norm(bands, vae::take_band(bands, x, 2), 4, weight, bias, 1e-6);
      EXPECT_LT(max_abs_diff(vae::gather_bands(bands, mine, 2), whole), 2e-6) << p << " ranks";
    });
  }
}

// The whole decoder (convolutions with halos, group norms, Ring attention in
// the mid block, two upsamples): every rank count from 1 to 4, latent
// heights that divide by it and that do not (bands of unequal size, which the
// attention pads and masks).
TEST(RowBands, BandedDecodeEqualsOneRank) {
  const auto c = banded_test_config();
  AutoencoderKL vae = random_autoencoder(c);
  for (int64_t h : {4, 5, 7}) {
    at::manual_seed(h);
    const at::Tensor z = at::randn({1, c.latent_channels, h, 6});
    const at::Tensor reference = vae->decode(z);
    const double scale = reference.abs().max().item<double>();
    for (int p : {1, 2, 3, 4}) {
      if (h < p) continue;
      test::run_ranks(p, [&](World& w) {
        SequenceParallelConfig cfg{1, p};
        cfg.setup(w);
        const at::Tensor image = vae->decode(z, cfg);
        ASSERT_EQ(image.sizes(), reference.sizes());
        EXPECT_LT(max_abs_diff(image, reference), 1e-5 * scale)
            << "h " << h << ", " << p << " ranks, rank " << w.rank();
      });
    }
  }
}

// In bf16 the bands round differently from one rank (the banded group norm
// keeps fp32 statistics), so both are held to the project's bf16 tolerance
// against the fp32 decode of the same weights: 3e-2 of the largest value.
TEST(RowBands, Bf16BandedDecodeIsAsCloseToFp32AsOneRank) {
  const auto c = banded_test_config();
  AutoencoderKL fp32 = random_autoencoder(c);
  AutoencoderKL bf16 = random_autoencoder(c, at::kBFloat16);
  at::manual_seed(1);
  const at::Tensor z = at::randn({1, c.latent_channels, 6, 6});
  const at::Tensor reference = fp32->decode(z);
  const double scale = reference.abs().max().item<double>();
  const double one_rank = max_abs_diff(bf16->decode(z), reference);
  EXPECT_LT(one_rank, 3e-2 * scale);
  test::run_ranks(2, [&](World& w) {
    SequenceParallelConfig cfg{1, 2};
    cfg.setup(w);
    const at::Tensor image = bf16->decode(z, cfg);
    EXPECT_EQ(image.scalar_type(), at::kBFloat16);
    EXPECT_LT(max_abs_diff(image, reference), 3e-2 * scale)
        << "one rank's bf16 error: " << one_rank;
  });
}

// Fewer latent rows than ranks: no bands to give every rank, so each decodes
// all of it; the result is still the one-rank picture.
TEST(RowBands, FewerRowsThanRanksDecodesWhole) {
  const auto c = banded_test_config();
  AutoencoderKL vae = random_autoencoder(c);
  const at::Tensor z = at::randn({1, c.latent_channels, 2, 3});
  const at::Tensor reference = vae->decode(z);
  test::run_ranks(3, [&](World& w) {
    SequenceParallelConfig cfg{1, 3};
    cfg.setup(w);
    EXPECT_TRUE(at::equal(vae->decode(z, cfg), reference));
  });
}

// The bands really talk: halos and statistics, and the Ring attention.
TEST(RowBands, EachRankComputesOnItsBandOnly) {
  const auto c = banded_test_config();
  AutoencoderKL vae = random_autoencoder(c);
  const at::Tensor z = at::randn({1, c.latent_channels, 8, 8});
  test::run_ranks(2, [&](World& w) {
    SequenceParallelConfig cfg{1, 2};
    cfg.setup(w);
    w.counters().reset();
    vae->decode(z, cfg);
    // Halos, statistics and the gathered picture are all_gather bytes; the
    // attention's ring steps move K and V of the mid block's band.
    EXPECT_GT(w.counters().get("all_gather").received, 0);
    EXPECT_GT(w.counters().get("ring_exchange").received, 0);
  });
}

// Wan's video autoencoder on bands: causal 3-d convolutions with halo rows
// (and each rank's own causal cache across the chunks), its per-frame
// attention as Ring attention, 3 latent frames (9 video frames), latent
// heights that do and do not divide by the ranks.
TEST(RowBands, BandedWanVideoDecodeEqualsOneRank) {
  test::TempDir dir;
  vae::write_random_wan_vae(dir.path + "/vae", vae::WanVaeConfig::tiny(), /*seed=*/2);
  vae::WanVae wan = vae::load_wan_vae(dir.path + "/vae").model;
  for (int64_t h : {4, 5}) {
    at::manual_seed(h);
    const at::Tensor z = at::randn({1, wan->config().z_dim, 3, h, 6});
    const at::Tensor reference = wan->decode(z);
    const double scale = reference.abs().max().item<double>();
    for (int p : {2, 3}) {
      test::run_ranks(p, [&](World& w) {
        SequenceParallelConfig cfg{1, p};
        cfg.setup(w);
        const at::Tensor video = wan->decode(z, cfg);
        ASSERT_EQ(video.sizes(), reference.sizes());
        EXPECT_LT(max_abs_diff(video, reference), 1e-5 * scale)
            << "h " << h << ", " << p << " ranks";
      });
    }
  }
}

TEST(RowBands, MistakesAreRefused) {
  test::run_ranks(2, [&](World& w) {
    SequenceParallelConfig hybrid{2, 1};
    hybrid.setup(w);
    EXPECT_THROW(vae::RowBandScope{hybrid}, std::invalid_argument);
    SequenceParallelConfig ring{1, 2};
    ring.setup(w);
    vae::RowBandScope bands(ring);
    EXPECT_THROW(vae::RowBandScope{ring}, std::logic_error);  // no nesting
    EXPECT_THROW(vae::take_band(bands, at::zeros({1, 1, 1, 4}), 2), std::invalid_argument);
    // The encoder's stride-2 convolutions cannot band.
    vae::Conv2d strided(4, 4, 3, 2, 0, at::kFloat);
    strided->weight = at::zeros({4, 4, 3, 3});
    strided->bias = at::zeros({4});
    EXPECT_THROW(strided->forward(at::zeros({1, 4, 4, 4})), std::logic_error);
  });
  SequenceParallelConfig not_set_up{1, 2};
  EXPECT_THROW(vae::RowBandScope{not_set_up}, std::invalid_argument);
}

}  // namespace
}  // namespace spdit
