#include "spdit/vae/row_bands.h"

#include <stdexcept>
#include <string>

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
  if (parts < 1) throw std::invalid_argument("spdit: row bands need at least one rank, not " + std::to_string(parts));
  std::vector<int64_t> out(parts, rows / parts);
  for (int64_t r = 0; r < rows % parts; ++r) ++out[r];
  return out;
}

RowBandScope::RowBandScope(const SequenceParallelConfig& config) : config_(&config) {
  if (current_scope) throw std::logic_error("spdit: row-band scopes do not nest");
  if (!config.is_initialized()) throw std::invalid_argument("spdit: row bands need a SequenceParallelConfig that is set up");
  if (config.get_ulysses_world_size() != 1 || config.get_cfg_world_size() != 1) {
    throw std::invalid_argument("spdit: row bands run over a ring-only config (ulysses 1, cfg 1), not ulysses " +
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
    throw std::invalid_argument("spdit: " + std::to_string(rows) + " rows cannot be split into bands for " +
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
    throw std::invalid_argument("spdit: a band of " + std::to_string(rows) + " rows cannot lend a halo of " +
                                std::to_string(halo));
  }
  // Every rank's first and last `halo` rows, gathered in rank order: 2 * halo
  // rows per rank. Each rank keeps the previous band's last rows and the
  // next band's first. (With two ranks that is exactly what each needs; with
  // more, a neighbour-only exchange would move less.)
  const at::Tensor edges = at::cat({x.narrow(dim, 0, halo), x.narrow(dim, rows - halo, halo)}, dim);
  const at::Tensor all = all_gather(bands.group(), edges.contiguous(), dim);
  const int r = bands.rank(), p = bands.size();
  const at::Tensor above = r > 0 ? all.narrow(dim, (r - 1) * 2 * halo + halo, halo) : at::zeros_like(edges.narrow(dim, 0, halo));
  const at::Tensor below = r + 1 < p ? all.narrow(dim, (r + 1) * 2 * halo, halo) : at::zeros_like(edges.narrow(dim, 0, halo));
  return at::cat({above.to(x.scalar_type()), x, below.to(x.scalar_type())}, dim);
}

at::Tensor banded_group_norm(const RowBandScope& bands, const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                             const at::Tensor& bias, double eps) {
  const int64_t b = x.size(0), c = x.size(1);
  if (groups <= 0 || c % groups != 0) {
    throw std::invalid_argument("spdit: group norm of " + std::to_string(c) + " channels in " + std::to_string(groups) +
                                " groups");
  }
  std::vector<int64_t> dims;
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  // Per channel: Welford's mean and variance in fp32 (exact enough, and no
  // fp64 copy of an activation of hundreds of MB).
  const at::Tensor xf = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
  auto [var, mean] = at::var_mean(xf, dims, /*unbiased=*/false, /*keepdim=*/false);
  const double n = static_cast<double>(x.numel() / (b * c));
  // Channels to groups (equal counts), in double: mean and M2 per (B, G).
  const at::Tensor cm = mean.to(at::kDouble).view({b, groups, c / groups});
  const at::Tensor cv = var.to(at::kDouble).view({b, groups, c / groups});
  const at::Tensor gmean = cm.mean(2);
  const at::Tensor gm2 = (cv + (cm - gmean.unsqueeze(2)).square()).sum(2) * n;
  const double count = n * static_cast<double>(c / groups);
  // Bands to the whole image: every rank's (count, mean, M2), combined.
  const at::Tensor mine = at::stack({at::full_like(gmean, count), gmean, gm2}, 0);  // (3, B, G)
  const at::Tensor all = all_gather(bands.group(), mine.unsqueeze(0).contiguous(), 0);  // (P, 3, B, G)
  const at::Tensor counts = all.select(1, 0), means = all.select(1, 1), m2s = all.select(1, 2);
  const at::Tensor total = counts.sum(0);
  const at::Tensor tmean = (counts * means).sum(0) / total;
  const at::Tensor tvar = (m2s + counts * (means - tmean.unsqueeze(0)).square()).sum(0) / total;
  // y = x * a + s per (B, C): a = weight * rstd, s = bias - mean * a.
  const at::Tensor rstd = (tvar + eps).rsqrt().repeat_interleave(c / groups, 1);  // (B, C)
  const at::Tensor cmean = tmean.repeat_interleave(c / groups, 1);
  const at::Tensor a = rstd * weight.to(at::kDouble).unsqueeze(0);
  const at::Tensor s = bias.to(at::kDouble).unsqueeze(0) - cmean * a;
  std::vector<int64_t> shape = {b, c};
  shape.resize(x.dim(), 1);
  const at::Tensor af = a.to(at::kFloat).view(shape), sf = s.to(at::kFloat).view(shape);
  return at::addcmul(sf, xf, af).to(x.scalar_type());
}

}  // namespace spdit::vae
