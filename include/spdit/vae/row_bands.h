#pragma once
// Parallel decode by rows: each rank of a group holds one horizontal band of
// the image at every resolution (the latent's rows split as evenly as
// possible, and twice as many rows after each 2x upsample). What a layer
// needs from outside its band, it exchanges, so that the bands put together
// are the one-rank result up to floating-point rounding:
// - a 3x3 convolution reads one row above and one below the band (the halo);
// - a group norm's mean and variance cover every band's pixels;
// - attention over all pixels runs as spdit's Ring attention across the bands.
//
// The layers of the autoencoder (vae_blocks.h) look for a RowBandScope on
// their thread and compute on bands while one is open:
//
//   RowBandScope bands(ring_config);   // ulysses 1, ring P: every rank of the job
//   at::Tensor mine = take_band(bands, z, /*dim=*/2);
//   at::Tensor image = gather_bands(bands, decoder->forward(mine), /*dim=*/2);
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "spdit/plan/sp_config.h"

namespace spdit::vae {

/// Rows per rank when `rows` are split over `parts` ranks: rows / parts each,
/// and one more for the first rows % parts ranks (so every rank has a row
/// when rows >= parts).
std::vector<int64_t> band_rows(int64_t rows, int parts);

/// While alive, the autoencoder's layers on this thread compute on row bands
/// of the ranks of `config`'s SP group. The config must be set up, with
/// ulysses 1 (the autoencoder's attention has one head, nothing to scatter)
/// and no CFG axis; it must outlive the scope. Scopes do not nest.
class RowBandScope {
 public:
  explicit RowBandScope(const SequenceParallelConfig& config);
  ~RowBandScope();
  RowBandScope(const RowBandScope&) = delete;
  RowBandScope& operator=(const RowBandScope&) = delete;

  /// The scope open on this thread, or nullptr.
  static const RowBandScope* current();

  const SequenceParallelConfig& config() const { return *config_; }
  const Group& group() const;
  int rank() const { return group().rank(); }
  int size() const { return group().size(); }

 private:
  const SequenceParallelConfig* config_;
};

/// This rank's band of `x` along `dim` (rows as band_rows splits them).
/// Throws when there are fewer rows than ranks.
at::Tensor take_band(const RowBandScope& bands, const at::Tensor& x, int64_t dim);

/// Every rank's band of `x` along `dim`, concatenated in rank order (on every rank).
at::Tensor gather_bands(const RowBandScope& bands, const at::Tensor& x, int64_t dim);

/// `x` with `halo` rows of the neighbouring bands added before and after
/// along `dim` (zeros above the first band and below the last: the
/// convolution's own zero padding). Bands must hold at least `halo` rows.
at::Tensor with_halo(const RowBandScope& bands, const at::Tensor& x, int64_t dim, int64_t halo);

/// A stride-1 2-d convolution of a band (B, C, rows, W) with a (2p+1) x (2p+1)
/// kernel and padding p, as if over the whole image: the band is convolved
/// in place (its own zero padding), then the p rows at each inner edge are
/// recomputed from a thin slab that includes the neighbours' rows. No copy
/// of the band is made, so it keeps its memory format (channels-last) and
/// its memory.
at::Tensor banded_conv2d(const RowBandScope& bands, const at::Tensor& x, const at::Tensor& weight,
                         const at::Tensor& bias, int64_t padding);

/// Single-head attention over all pixels, q, k, v (B, S, 1, D) for S pixels
/// in row-major order: local when no scope is open (or it has one rank); on
/// row bands, spdit's Ring attention over the bands, which are padded to the
/// largest (the padding masked out as keys and dropped as queries).
at::Tensor pixel_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double scale);

/// Group normalisation of a band (B, C, ...) whose statistics are those of
/// all bands together: each rank's per-group count, mean and sum of squared
/// deviations are combined in double (Chan's parallel formula), so the result
/// matches one rank's group_norm within rounding.
at::Tensor banded_group_norm(const RowBandScope& bands, const at::Tensor& x, int64_t groups,
                             const at::Tensor& weight, const at::Tensor& bias, double eps);

}  // namespace spdit::vae
