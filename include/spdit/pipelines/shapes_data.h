#pragma once
// The demo model's world: one flat shape (circle, square or triangle) in one
// colour on a background of another, at a varying size and place, with its
// prompt ("a red circle on a blue background"). Drawn on the fly from a seed,
// so the data set needs no download; and read back from a picture, so tests
// can check that a generated image shows what its prompt asked for.
//
//   std::mt19937_64 rng(0);
//   ShapeSample s = draw_random_shape(rng, 128);    // s.prompt, s.image (3,
//   128, 128) in [-1, 1] ShapeReading r = read_shape_picture(pixels);     //
//   pixels (H, W, 3) uint8: r.shape, r.colour, ...
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace spdit::pipelines {

/// The words the demo model knows.
const std::vector<std::string>& demo_shapes();   // circle, square, triangle
const std::vector<std::string>& demo_colours();  // red, green, blue, yellow, white, black
/// The RGB value a colour word is drawn with; throws naming the known colours.
std::array<uint8_t, 3> demo_colour_rgb(const std::string& colour);

/// "a <colour> <shape> on a <background> background".
std::string shape_prompt(const std::string& shape, const std::string& colour,
                         const std::string& background);
/// Every prompt of the vocabulary (colour != background), in a fixed order.
std::vector<std::string> all_shape_prompts();

struct ShapeSample {
  std::string prompt, shape, colour, background;
  at::Tensor image;  // (3, size, size) float32 in [-1, 1], as the autoencoder
                     // takes pixels
};

/// One shape: centre (cx, cy) and half-size `radius` in pixels. A triangle
/// points up, its base and height 2 * radius.
ShapeSample draw_shape(const std::string& shape, const std::string& colour,
                       const std::string& background, double cx, double cy, double radius,
                       int64_t size);
/// A random prompt of the vocabulary, its half-size between 0.17 and 0.32 of
/// the picture and its centre anywhere that keeps it wholly inside.
ShapeSample draw_random_shape(std::mt19937_64& rng, int64_t size);

/// What a picture shows, read by nearest palette colour: the background is
/// the colour of most border pixels, the shape's colour the commonest other
/// one; the shape is told by how much of its bounding box it fills (square
/// ~1, circle ~0.79, triangle ~0.5).
struct ShapeReading {
  std::string shape, colour, background;
  double fill = 0;    // shape pixels / their bounding box
  double aspect = 0;  // the bounding box's width / its height
  /// Whether the shape also has its proportions, as every drawn one does:
  /// its box about as wide as tall (a triangle's too) and, for a circle, a
  /// fill near pi/4. An oval or a lens reads as a circle by fill alone, a
  /// rectangle as a square.
  bool well_proportioned = false;
  double area_fraction = 0;  // shape pixels / all pixels
  double colour_error = 0;   // mean RGB distance of the shape pixels from their palette colour
};
ShapeReading read_shape_picture(const at::Tensor& pixels);  // (H, W, 3) uint8

}  // namespace spdit::pipelines
