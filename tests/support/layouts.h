#pragma once
// Published checkpoint layouts, written from the references' own names (Black
// Forest Labs' flux/modules/layers.py, Wan2.1's wan/modules/model.py), not from
// spdit's converters, so that a test of the converters checks them.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace spdit::test {

/// name -> (safetensors dtype name, shape).
using Layout = std::map<std::string, std::pair<std::string, std::vector<int64_t>>>;

/// flux1-dev.safetensors' names and shapes (schnell: no guidance_in).
inline Layout flux_bfl_layout(int64_t hidden, int64_t in, int64_t out, int64_t text, int64_t pooled,
                              int64_t head_dim, int64_t dual, int64_t single, bool guidance,
                              const std::string& dt = "BF16") {
  const int64_t h = hidden, m = 4 * hidden;
  Layout l;
  auto lin = [&](const std::string& n, int64_t o, int64_t i) {
    l[n + ".weight"] = {dt, {o, i}};
    l[n + ".bias"] = {dt, {o}};
  };
  lin("img_in", h, in);
  lin("txt_in", h, text);
  lin("time_in.in_layer", h, 256);
  lin("time_in.out_layer", h, h);
  lin("vector_in.in_layer", h, pooled);
  lin("vector_in.out_layer", h, h);
  if (guidance) {
    lin("guidance_in.in_layer", h, 256);
    lin("guidance_in.out_layer", h, h);
  }
  for (int64_t i = 0; i < dual; ++i) {
    const std::string b = "double_blocks." + std::to_string(i) + ".";
    for (const char* x : {"img", "txt"}) {
      const std::string s = b + x;
      lin(s + "_mod.lin", 6 * h, h);
      lin(s + "_attn.qkv", 3 * h, h);
      l[s + "_attn.norm.query_norm.scale"] = {dt, {head_dim}};
      l[s + "_attn.norm.key_norm.scale"] = {dt, {head_dim}};
      lin(s + "_attn.proj", h, h);
      lin(s + "_mlp.0", m, h);
      lin(s + "_mlp.2", h, m);
    }
  }
  for (int64_t i = 0; i < single; ++i) {
    const std::string b = "single_blocks." + std::to_string(i) + ".";
    lin(b + "linear1", 3 * h + m, h);
    lin(b + "linear2", h, h + m);
    l[b + "norm.query_norm.scale"] = {dt, {head_dim}};
    l[b + "norm.key_norm.scale"] = {dt, {head_dim}};
    lin(b + "modulation.lin", 3 * h, h);
  }
  lin("final_layer.linear", out, h);
  lin("final_layer.adaLN_modulation.1", 2 * h, h);
  return l;
}

/// Wan2.1 text-to-video as Wan ships it (fp32).
inline Layout wan_original_layout(int64_t dim, int64_t ffn, int64_t layers, int64_t in = 16,
                                  int64_t out = 16, int64_t text = 4096, int64_t freq = 256,
                                  const std::string& dt = "F32") {
  Layout l;
  auto lin = [&](const std::string& n, int64_t o, int64_t i) {
    l[n + ".weight"] = {dt, {o, i}};
    l[n + ".bias"] = {dt, {o}};
  };
  l["patch_embedding.weight"] = {dt, {dim, in, 1, 2, 2}};
  l["patch_embedding.bias"] = {dt, {dim}};
  lin("text_embedding.0", dim, text);
  lin("text_embedding.2", dim, dim);
  lin("time_embedding.0", dim, freq);
  lin("time_embedding.2", dim, dim);
  lin("time_projection.1", 6 * dim, dim);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* a : {"self_attn", "cross_attn"}) {
      for (const char* p : {"q", "k", "v", "o"}) lin(b + a + "." + p, dim, dim);
      l[b + a + ".norm_q.weight"] = {dt, {dim}};
      l[b + a + ".norm_k.weight"] = {dt, {dim}};
    }
    l[b + "norm3.weight"] = {dt, {dim}};
    l[b + "norm3.bias"] = {dt, {dim}};
    lin(b + "ffn.0", ffn, dim);
    lin(b + "ffn.2", dim, ffn);
    l[b + "modulation"] = {dt, {1, 6, dim}};
  }
  lin("head.head", out * 4, dim);
  l["head.modulation"] = {dt, {1, 2, dim}};
  return l;
}

}  // namespace spdit::test
