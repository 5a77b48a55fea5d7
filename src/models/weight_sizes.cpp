// Parameter counts of the reference models from their configurations, without
// building them: `spdit run` refuses weights that cannot fit before it
// allocates any (Flux's full preset is 12 billion parameters, 48 GB in fp32).
// models_test checks each formula against a built model.
#include <stdexcept>

#include "spdit/models/dit_attention.h"
#include "spdit/models/flux.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/qwen_image.h"
#include "spdit/models/wan.h"

namespace spdit::models {
namespace {

int64_t linear(int64_t in, int64_t out) { return in * out + out; }
int64_t feed_forward(int64_t dim, int64_t hidden) {
  return linear(dim, hidden) + linear(hidden, dim);
}
int64_t timestep_embedding(int64_t in, int64_t dim) { return linear(in, dim) + linear(dim, dim); }

int64_t attention(const DitAttentionOptions& o) {
  const int64_t inner = o.heads * o.head_dim;
  int64_t n = 3 * linear(o.dim, inner) + 2 * (o.qk_norm_full_dim ? inner : o.head_dim);
  if (o.context_projections) n += 3 * linear(o.dim, inner) + 2 * o.head_dim;
  if (o.to_out) n += linear(inner, o.dim);
  if (o.to_add_out) n += linear(inner, o.dim);
  return n;
}

int64_t flux(const FluxConfig& c) {
  const int64_t h = c.hidden;
  int64_t n = linear(h, c.in_channels) + linear(c.in_channels, h) + linear(c.text_dim, h) +
              timestep_embedding(256, h) + timestep_embedding(c.pooled_dim, h) + linear(h, 2 * h);
  if (c.guidance) n += timestep_embedding(256, h);
  n += c.dual_blocks *
       (2 * linear(h, 6 * h) + attention({h, c.heads, c.head_dim, true, true, true, false}) +
        2 * feed_forward(h, h * c.mlp_ratio));
  n += c.single_blocks *
       (linear(h, 3 * h) + linear(h, h * c.mlp_ratio) + linear(h * (1 + c.mlp_ratio), h) +
        attention({h, c.heads, c.head_dim, false, false, false, false}));
  return n;
}

int64_t wan(const WanConfig& c) {
  const int64_t h = c.hidden;
  const DitAttentionOptions self{h, c.heads, c.head_dim, false, true, false, true};
  int64_t n = linear(h, c.out_channels * 4) + c.in_channels * h * 4 +
              h +  // proj_out, patch_embedding
              timestep_embedding(c.freq_dim, h) + linear(h, 6 * h) +
              timestep_embedding(c.text_dim, h) + 2 * h;  // scale_shift_table
  n += c.blocks * (2 * attention(self) + 2 * h /* norm2 */ + feed_forward(h, c.ffn) + 6 * h);
  return n;
}

int64_t qwen_image(const QwenImageConfig& c) {
  const int64_t h = c.hidden;
  int64_t n = linear(h, c.in_channels) + linear(c.in_channels, h) + c.text_dim +
              linear(c.text_dim, h) + timestep_embedding(256, h) + linear(h, 2 * h);
  n += c.blocks *
       (2 * linear(h, 6 * h) + attention({h, c.heads, c.head_dim, true, true, true, false}) +
        2 * feed_forward(h, 4 * h));
  return n;
}

}  // namespace

int64_t parameter_count(const std::string& model, const std::string& preset) {
  if (model == "flux") return flux(FluxConfig::preset(preset));
  if (model == "wan") return wan(WanConfig::preset(preset));
  if (model == "qwen-image" || model == "qwen_image")
    return qwen_image(QwenImageConfig::preset(preset));
  throw std::invalid_argument("spdit: unknown model '" + model + "'; use flux, wan or qwen-image");
}

}  // namespace spdit::models
