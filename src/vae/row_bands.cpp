#include "spdit/vae/row_bands.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spdit/attention/attention.h"
#include "spdit/attention/local_attention.h"
#include "spdit/hooks/forward_context.h"
#include "spdit/runtime/comm.h"

namespace spdit::vae {
namespace {

thread_local const RowBandScope* current_scope = nullptr;

int64_t band_start(const std::vector<int64_t>& rows, int rank) {
  int64_t start = 0;
  for (int r = 0; r < rank; ++r) start += rows[r];
  return start;
}

}  // namespace

std::vector<int64_t> band_rows(int64_t rows, int parts) {
  if (parts < 1)
    throw std::invalid_argument("spdit: row bands need at least one rank, not " +
                                std::to_string(parts));
  std::vector<int64_t> out(parts, rows / parts);
  for (int64_t r = 0; r < rows % parts; ++r) ++out[r];
  return out;
}

RowBandScope::RowBandScope(const SequenceParallelConfig& config) : config_(&config) {
  if (current_scope) throw std::logic_error("spdit: row-band scopes do not nest");
  if (!config.is_initialized())
    throw std::invalid_argument("spdit: row bands need a SequenceParallelConfig that is set up");
  if (config.get_ulysses_world_size() != 1 || config.get_cfg_world_size() != 1) {
    throw std::invalid_argument(
        "spdit: row bands run over a ring-only config (ulysses 1, cfg 1), not ulysses " +
        std::to_string(config.get_ulysses_world_size()) + ", cfg " +
        std::to_string(config.get_cfg_world_size()));
  }
  current_scope = this;
}

RowBandScope::~RowBandScope() { current_scope = nullptr; }

const RowBandScope* RowBandScope::current() { return current_scope; }

const Group& RowBandScope::group() const { return config_->state().sp_group(); }

at::Tensor take_band(const RowBandScope& bands, const at::Tensor& x, int64_t dim) {
  const int64_t rows = x.size(dim);
  if (rows < bands.size()) {
    throw std::invalid_argument("spdit: " + std::to_string(rows) +
                                " rows cannot be split into bands for " +
                                std::to_string(bands.size()) + " ranks (each needs at least one)");
  }
  const auto split = band_rows(rows, bands.size());
  return x.narrow(dim, band_start(split, bands.rank()), split[bands.rank()]);
}

at::Tensor gather_bands(const RowBandScope& bands, const at::Tensor& x, int64_t dim) {
  return all_gather_uneven(bands.group(), x.contiguous(), dim);
}

at::Tensor with_halo(const RowBandScope& bands, const at::Tensor& x, int64_t dim, int64_t halo) {
  const int64_t rows = x.size(dim);
  if (rows < halo) {
    throw std::invalid_argument("spdit: a band of " + std::to_string(rows) +
                                " rows cannot lend a halo of " + std::to_string(halo));
  }
  // Every rank's first and last `halo` rows, gathered in rank order: 2 * halo
  // rows per rank. Each rank keeps the previous band's last rows and the
  // next band's first. (With two ranks that is exactly what each needs; with
  // more, a neighbour-only exchange would move less.)
  const at::Tensor edges = at::cat({x.narrow(dim, 0, halo), x.narrow(dim, rows - halo, halo)}, dim);
  const at::Tensor all = all_gather(bands.group(), edges.contiguous(), dim);
  const int r = bands.rank(), p = bands.size();
  const at::Tensor above = r > 0 ? all.narrow(dim, (r - 1) * 2 * halo + halo, halo)
                                 : at::zeros_like(edges.narrow(dim, 0, halo));
  const at::Tensor below = r + 1 < p ? all.narrow(dim, (r + 1) * 2 * halo, halo)
                                     : at::zeros_like(edges.narrow(dim, 0, halo));
  return at::cat({above.to(x.scalar_type()), x, below.to(x.scalar_type())}, dim);
}

at::Tensor pixel_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double scale) {
  const RowBandScope* bands = RowBandScope::current();
  if (!bands || bands->size() == 1) {
    LocalAttentionOptions o;
    o.scale = scale;
    return local_attention(q, k, v, o).out;
  }
  const int64_t n = q.size(1);
  int64_t longest = n;
  for (int64_t m : all_gather_ints(bands->group(), {n})) longest = std::max(longest, m);
  auto pad = [&](const at::Tensor& t) {
    return n == longest ? t : at::constant_pad_nd(t, {0, 0, 0, 0, 0, longest - n}, 0);
  };
  // Every rank passes a mask (the ranks must agree on having one).
  AttentionMasks masks;
  masks.key_padding_mask = at::zeros({q.size(0), longest}, at::kBool);
  masks.key_padding_mask.narrow(1, 0, n).fill_(true);
  SpRegionScope region(bands->config());
  return attention(pad(q), pad(k), pad(v), AttentionOptions().scale(scale), nullptr, masks)
      .narrow(1, 0, n);
}

at::Tensor banded_conv2d(const RowBandScope& bands, const at::Tensor& x, const at::Tensor& weight,
                         const at::Tensor& bias, int64_t padding) {
  const int64_t p = padding, rows = x.size(2);
  const std::vector<int64_t> stride = {1, 1}, pad_both = {p, p}, pad_width = {0, p};
  // Every rank sends its first and last p rows (the same shape on every rank,
  // whatever its band's height) and gets the neighbours' in the slab:
  // [p rows above, its first p rows, its last p rows, p rows below].
  const at::Tensor slab =
      with_halo(bands, at::cat({x.narrow(2, 0, p), x.narrow(2, rows - p, p)}, 2), 2, p);
  if (rows < 2 * p) {  // a band thinner than its two edges: small, convolved whole
    const at::Tensor whole = at::cat({slab.narrow(2, 0, p), x, slab.narrow(2, 3 * p, p)}, 2);
    return at::conv2d(whole, weight, bias, stride, pad_width);
  }
  at::Tensor out = at::conv2d(x, weight, bias, stride, pad_both);
  if (bands.rank() > 0) {
    const at::Tensor top =
        at::cat({slab.narrow(2, 0, 2 * p), x.narrow(2, p, std::min(p, rows - p))}, 2);
    out.narrow(2, 0, p).copy_(at::conv2d(top, weight, bias, stride, pad_width).narrow(2, 0, p));
  }
  if (bands.rank() + 1 < bands.size()) {
    const at::Tensor bottom = at::cat(
        {x.narrow(2, rows - 2 * p, std::min(p, rows - p)), slab.narrow(2, 2 * p, 2 * p)}, 2);
    const at::Tensor last = at::conv2d(bottom, weight, bias, stride, pad_width);
    out.narrow(2, rows - p, p).copy_(last.narrow(2, last.size(2) - p, p));
  }
  return out;
}

namespace {

// Every band's per-(B, group) count, mean and sum of squared deviations,
// combined in double (Chan's parallel formula): the whole image's mean and
// 1 / sqrt(variance + eps).
std::pair<at::Tensor, at::Tensor> combine_moments(const RowBandScope& bands, double count,
                                                  const at::Tensor& mean, const at::Tensor& m2,
                                                  double eps) {
  const at::Tensor mine = at::stack({at::full_like(mean, count), mean, m2}, 0);  // (3, B, G)
  const at::Tensor all =
      all_gather(bands.group(), mine.unsqueeze(0).contiguous(), 0);  // (P, 3, B, G)
  const at::Tensor counts = all.select(1, 0), means = all.select(1, 1), m2s = all.select(1, 2);
  const at::Tensor total = counts.sum(0);
  const at::Tensor tmean = (counts * means).sum(0) / total;
  const at::Tensor tvar = (m2s + counts * (means - tmean.unsqueeze(0)).square()).sum(0) / total;
  return {tmean, (tvar + eps).rsqrt()};
}

std::vector<int64_t> per_channel_shape(const at::Tensor& x) {
  std::vector<int64_t> shape = {x.size(0), x.size(1)};
  shape.resize(x.dim(), 1);
  return shape;
}

}  // namespace

at::Tensor banded_group_norm(const RowBandScope& bands, const at::Tensor& x, int64_t groups,
                             const at::Tensor& weight, const at::Tensor& bias, double eps) {
  const int64_t b = x.size(0), c = x.size(1);
  if (groups <= 0 || c % groups != 0) {
    throw std::invalid_argument("spdit: group norm of " + std::to_string(c) + " channels in " +
                                std::to_string(groups) + " groups");
  }
  const int64_t cg = c / groups, pixels = x.numel() / (b * c);
  const double count = static_cast<double>(cg * pixels);
  const at::Tensor w = weight.to(at::kDouble).unsqueeze(0), bi = bias.to(at::kDouble).unsqueeze(0);
  if (x.scalar_type() == at::kFloat) {
    // The band's own group norm (ATen's fast kernel, channels-last kept)
    // also yields the band's mean and rstd; the whole image's differ only by
    // a per-channel affine map, applied in place:
    //   y = (y_band - bias) * (rstd / rstd_band) + bias + (mean_band - mean) * rstd * weight.
    auto [y, bmean, brstd] = at::native_group_norm(x.contiguous(x.suggest_memory_format()), weight,
                                                   bias, b, c, pixels, groups, eps);
    const at::Tensor lm = bmean.to(at::kDouble).view({b, groups}),
                     lr = brstd.to(at::kDouble).view({b, groups});
    const at::Tensor m2 = ((lr.square().reciprocal() - eps) * count).clamp_min(0);
    auto [mean, rstd] = combine_moments(bands, count, lm, m2, eps);
    const at::Tensor alpha = (rstd / lr).repeat_interleave(cg, 1);  // (B, C)
    const at::Tensor shift = ((lm - mean) * rstd).repeat_interleave(cg, 1) * w + bi * (1 - alpha);
    const auto shape = per_channel_shape(x);
    return y.mul_(alpha.to(at::kFloat).view(shape)).add_(shift.to(at::kFloat).view(shape));
  }
  // Other dtypes: ATen's statistics would be in that dtype (bf16: 3 digits),
  // so they are taken in fp32 per channel (Welford) and combined in double.
  const at::Tensor xf = x.to(at::kFloat);
  std::vector<int64_t> dims;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  auto [var, cmean] = at::var_mean(xf, dims, /*unbiased=*/false, /*keepdim=*/false);
  const at::Tensor cm = cmean.to(at::kDouble).view({b, groups, cg});
  const at::Tensor cv = var.to(at::kDouble).view({b, groups, cg});
  const at::Tensor gmean = cm.mean(2);
  const at::Tensor gm2 =
      (cv + (cm - gmean.unsqueeze(2)).square()).sum(2) * static_cast<double>(pixels);
  auto [mean, rstd] = combine_moments(bands, count, gmean, gm2, eps);
  const at::Tensor a = rstd.repeat_interleave(cg, 1) * w;  // y = x * a + s per (B, C)
  const at::Tensor s = bi - mean.repeat_interleave(cg, 1) * a;
  const auto shape = per_channel_shape(x);
  return at::addcmul(s.to(at::kFloat).view(shape), xf, a.to(at::kFloat).view(shape))
      .to(x.scalar_type());
}

}  // namespace spdit::vae
