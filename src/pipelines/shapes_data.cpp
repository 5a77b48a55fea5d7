#include "spdit/pipelines/shapes_data.h"

#include <stdexcept>

namespace spdit::pipelines {
namespace {

// Distinct under RGB distance, so a blurred edge pixel still reads as one of
// them.
const std::vector<std::array<uint8_t, 3>>& palette() {
  static const std::vector<std::array<uint8_t, 3>> p = {
      {220, 30, 30}, {30, 170, 50}, {30, 70, 220}, {240, 220, 40}, {245, 245, 245}, {20, 20, 20}};
  return p;
}

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : ", ") + w;
  return s;
}

// Edges are anti-aliased (4 x 4 samples per pixel), as a photograph's would be.
constexpr int64_t kSamples = 4;

at::Tensor coverage(const std::string& shape, double cx, double cy, double r, int64_t size) {
  const int64_t n = size * kSamples;
  auto c = (at::arange(n, at::kDouble) + 0.5) / kSamples;
  auto y = c.view({n, 1}).expand({n, n});
  auto x = c.view({1, n}).expand({n, n});
  at::Tensor inside;
  if (shape == "circle") {
    inside = (x - cx).pow(2) + (y - cy).pow(2) <= r * r;
  } else if (shape == "square") {
    inside = ((x - cx).abs() <= r).logical_and((y - cy).abs() <= r);
  } else if (shape == "triangle") {  // apex up: the half-width grows from 0 at
                                     // the top to r at the base
    inside = (y <= cy + r).logical_and((x - cx).abs() <= (y - (cy - r)) / 2);
  } else {
    throw std::invalid_argument("spdit: unknown shape '" + shape + "'; the demo knows " +
                                joined(demo_shapes()));
  }
  return inside.to(at::kFloat).view({size, kSamples, size, kSamples}).mean({1, 3});
}

int64_t colour_index(const std::string& colour) {
  const auto& names = demo_colours();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == colour) return static_cast<int64_t>(i);
  }
  throw std::invalid_argument("spdit: unknown colour '" + colour + "'; the demo knows " +
                              joined(names));
}

at::Tensor rgb(const std::string& colour) {
  const auto c = demo_colour_rgb(colour);
  return at::tensor({float(c[0]), float(c[1]), float(c[2])}).view({3, 1, 1}) / 127.5 - 1.0;
}

// The commonest value of a 1-D long tensor among those not equal to `skip`; -1
// if none.
int64_t mode_of(const at::Tensor& labels, int64_t bins, int64_t skip) {
  auto counts = at::bincount(labels.flatten(), {}, bins);
  if (skip >= 0) counts[skip] = 0;
  if (counts.max().item<int64_t>() == 0) return -1;
  return counts.argmax().item<int64_t>();
}

}  // namespace

const std::vector<std::string>& demo_shapes() {
  static const std::vector<std::string> s = {"circle", "square", "triangle"};
  return s;
}

const std::vector<std::string>& demo_colours() {
  static const std::vector<std::string> c = {"red", "green", "blue", "yellow", "white", "black"};
  return c;
}

std::array<uint8_t, 3> demo_colour_rgb(const std::string& colour) {
  return palette()[colour_index(colour)];
}

std::string shape_prompt(const std::string& shape, const std::string& colour,
                         const std::string& background) {
  return "a " + colour + " " + shape + " on a " + background + " background";
}

std::vector<std::string> all_shape_prompts() {
  std::vector<std::string> prompts;
  for (const auto& shape : demo_shapes()) {
    for (const auto& colour : demo_colours()) {
      for (const auto& background : demo_colours()) {
        if (colour != background) prompts.push_back(shape_prompt(shape, colour, background));
      }
    }
  }
  return prompts;
}

ShapeSample draw_shape(const std::string& shape, const std::string& colour,
                       const std::string& background, double cx, double cy, double radius,
                       int64_t size) {
  if (colour == background) {
    throw std::invalid_argument("spdit: a " + colour + " shape on a " + background +
                                " background cannot be seen");
  }
  auto a = coverage(shape, cx, cy, radius, size).unsqueeze(0);
  ShapeSample s{shape_prompt(shape, colour, background), shape, colour, background, {}};
  s.image = (rgb(background) * (1 - a) + rgb(colour) * a).contiguous();
  return s;
}

ShapeSample draw_random_shape(std::mt19937_64& rng, int64_t size) {
  const auto& shapes = demo_shapes();
  const auto& colours = demo_colours();
  // std's distributions are not the same on every standard library; these are.
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * (rng() >> 11) * 0x1.0p-53; };
  const auto& shape = shapes[pick(shapes.size())];
  const size_t ci = pick(colours.size());
  const size_t bi = (ci + 1 + pick(colours.size() - 1)) % colours.size();  // any other colour
  const double r = uniform(0.17, 0.32) * size;
  const double cx = uniform(r + 1, size - r - 1), cy = uniform(r + 1, size - r - 1);
  return draw_shape(shape, colours[ci], colours[bi], cx, cy, r, size);
}

ShapeReading read_shape_picture(const at::Tensor& pixels) {
  if (pixels.dim() != 3 || pixels.size(2) != 3 || pixels.scalar_type() != at::kByte) {
    throw std::invalid_argument("spdit: read_shape_picture takes (H, W, 3) uint8 pixels, not " +
                                std::string(c10::toString(pixels.scalar_type())) + " " +
                                c10::str(pixels.sizes()));
  }
  const int64_t h = pixels.size(0), w = pixels.size(1), n = static_cast<int64_t>(palette().size());
  auto pal = at::empty({n, 3}, at::kFloat);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < 3; ++k) pal[i][k] = float(palette()[i][k]);
  }
  auto px = pixels.to(at::kFloat).view({h * w, 3});
  auto dist = at::cdist(px, pal);  // (H*W, n)
  auto [best, labels_flat] = dist.min(1);
  auto labels = labels_flat.view({h, w});
  auto border = at::cat({labels[0], labels[h - 1], labels.select(1, 0), labels.select(1, w - 1)});
  ShapeReading r;
  const int64_t bg = mode_of(border, n, -1);
  r.background = demo_colours()[bg];
  const int64_t fg = mode_of(labels, n, bg);
  if (fg < 0) return r;  // nothing but background
  r.colour = demo_colours()[fg];
  auto mask = labels.eq(fg);
  const double area = mask.sum().item<double>();
  r.area_fraction = area / double(h * w);
  r.colour_error = best.view({h, w}).masked_select(mask).mean().item<double>();
  // The bounding box of rows and columns holding at least two shape pixels,
  // so that a stray pixel does not stretch it.
  auto rows = at::nonzero(mask.sum(1) >= 2).flatten();
  auto cols = at::nonzero(mask.sum(0) >= 2).flatten();
  if (rows.numel() == 0 || cols.numel() == 0) return r;
  const double box_h = double(rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1);
  const double box_w = double(cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1);
  r.fill = area / (box_h * box_w);
  r.aspect = box_w / box_h;
  r.shape = r.fill > 0.9 ? "square" : r.fill > 0.64 ? "circle" : "triangle";
  r.well_proportioned = r.aspect > 0.8 && r.aspect < 1.25 &&
                        (r.shape != "circle" || (r.fill > 0.72 && r.fill < 0.85));
  return r;
}

}  // namespace spdit::pipelines
