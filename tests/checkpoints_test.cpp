// Real-size models without their memory, and checkpoints read as they ship.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/flux.h"
#include "spdit/models/layers.h"
#include "spdit/models/qwen_image.h"
#include "spdit/models/skeleton.h"
#include "spdit/models/wan.h"
#include "spdit/models/weights.h"
#include "support/layouts.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using namespace spdit::models;

namespace {

// Resident set of this process, from /proc (kB -> bytes).
int64_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

int64_t parameter_bytes(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel() * p.element_size();
  return n;
}

}  // namespace

TEST(Skeleton, FullSizeFluxAndWanTakeNoResidentMemory) {
  const int64_t before = resident_bytes();
  SkeletonScope skeleton;
  FluxTransformer flux(FluxConfig::preset("full"));
  WanTransformer wan(WanConfig::preset("full"));
  const int64_t grew = resident_bytes() - before;
  // Flux.1-dev has ~11.9 billion parameters (47.6 GB in fp32), Wan2.1 1.3B ~1.4 billion.
  EXPECT_GT(parameter_bytes(*flux), int64_t{44} * 1000 * 1000 * 1000);
  EXPECT_GT(parameter_bytes(*wan), int64_t{5} * 1000 * 1000 * 1000);
  EXPECT_LT(grew, int64_t{400} * 1000 * 1000) << "resident grew by " << grew << " bytes";
  // Lazy pages read as zeros and take memory where written.
  auto t = lazy_empty({1024, 1024}, at::kFloat);
  EXPECT_EQ(t.abs().sum().item<double>(), 0.0);
  t.fill_(1.0);
  EXPECT_EQ(t.sum().item<double>(), 1024.0 * 1024.0);
}

// ---- checkpoints as published, read in place ----------------------------

using namespace spdit::checkpoints;
using test::TempDir;

namespace {

at::ScalarType dtype_of(const std::string& name) {
  return name == "BF16" ? at::kBFloat16 : name == "F16" ? at::kHalf : at::kFloat;
}

void write_sparse(const std::string& path, const test::Layout& layout) {
  std::map<std::string, std::pair<at::ScalarType, std::vector<int64_t>>> typed;
  for (const auto& [name, spec] : layout) typed[name] = {dtype_of(spec.first), spec.second};
  write_sparse_safetensors(path, typed);
}

// Splits `layout` into n shards named as diffusers and Wan name them, with
// the index that maps each tensor to its shard.
void write_sharded(const std::string& dir, const std::string& stem, const test::Layout& layout,
                   int n) {
  std::vector<test::Layout> shards(n);
  nlohmann::json index;
  int i = 0;
  for (const auto& [name, spec] : layout) {
    const int k = i++ * n / static_cast<int>(layout.size());
    shards[k][name] = spec;
    char file[128];
    std::snprintf(file, sizeof file, "%s-%05d-of-%05d.safetensors", stem.c_str(), k + 1, n);
    index["weight_map"][name] = file;
  }
  for (int k = 0; k < n; ++k) {
    char file[128];
    std::snprintf(file, sizeof file, "%s-%05d-of-%05d.safetensors", stem.c_str(), k + 1, n);
    write_sparse(dir + "/" + file, shards[k]);
  }
  std::ofstream(dir + "/" + stem + ".safetensors.index.json") << index.dump(1);
}

test::Layout layout_of(const torch::nn::Module& model, const std::string& dt) {
  test::Layout l;
  for (const auto& p : model.named_parameters(true)) l[p.key()] = {dt, p.value().sizes().vec()};
  return l;
}

void expect_fits(const Checkpoint& ckpt, const std::string& model, const std::string& layout,
                 const std::string& variant) {
  auto found = identify(ckpt);
  EXPECT_EQ(found.model, model);
  EXPECT_EQ(found.layout, layout);
  EXPECT_EQ(found.variant, variant);
  auto skeleton = build_model(found);
  auto cmp = compare(*skeleton, tensors_in_model_names(ckpt, found));
  EXPECT_TRUE(cmp.ok()) << variant << " missing " << cmp.missing.size() << " unexpected "
                        << cmp.unexpected.size() << " mismatched " << cmp.mismatched.size()
                        << (cmp.missing.empty() ? "" : ": " + cmp.missing[0])
                        << (cmp.unexpected.empty() ? "" : ", " + cmp.unexpected[0])
                        << (cmp.mismatched.empty() ? "" : ", " + cmp.mismatched[0]);
}

}  // namespace

// Real-size layouts without a download: sparse files (a header and a data
// region the file system does not store), read, identified and checked
// against a skeleton model, with no weight memory.
TEST(Checkpoints, RealSizeLayoutsAreIdentifiedAndFitTheirModels) {
  TempDir tmp;
  const int64_t before = resident_bytes();
  {
    const std::string dev = tmp.path + "/flux1-dev.safetensors";
    write_sparse(dev, test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, true));
    auto ckpt = Checkpoint::open(dev);
    EXPECT_EQ(ckpt.tensors().size(), 780u);
    EXPECT_EQ(ckpt.data_bytes(), int64_t{11901408320} * 2);
    expect_fits(ckpt, "flux", "bfl", "dev");
    auto found = identify(ckpt);
    const auto& c = std::get<FluxConfig>(found.config);
    EXPECT_EQ(c.heads, 24);
    EXPECT_EQ(c.dual_blocks, 19);
    EXPECT_EQ(c.single_blocks, 38);
  }
  {
    const std::string schnell = tmp.path + "/flux1-schnell.safetensors";
    write_sparse(schnell, test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, false));
    auto ckpt = Checkpoint::open(schnell);
    EXPECT_EQ(ckpt.tensors().size(), 776u);
    expect_fits(ckpt, "flux", "bfl", "schnell");
    EXPECT_FALSE(std::get<FluxConfig>(identify(ckpt).config).guidance);
  }
  {
    const std::string fill = tmp.path + "/flux1-fill-dev.safetensors";
    write_sparse(fill, test::flux_bfl_layout(3072, 384, 64, 4096, 768, 128, 19, 38, true));
    auto ckpt = Checkpoint::open(fill);
    expect_fits(ckpt, "flux", "bfl", "fill");
    EXPECT_EQ(std::get<FluxConfig>(identify(ckpt).config).out_channels, 64);
  }
  {
    // FLUX.1-dev as diffusers ships it: transformer/ with 3 shards, an index and config.json.
    const std::string root = tmp.path + "/FLUX.1-dev", dir = root + "/transformer";
    mkdir(root.c_str(), 0755);
    mkdir(dir.c_str(), 0755);
    models::SkeletonScope skeleton;
    FluxTransformer model(FluxConfig::preset("full"));
    write_sharded(dir, "diffusion_pytorch_model", layout_of(*model, "BF16"), 3);
    std::ofstream(dir + "/config.json")
        << R"({"_class_name": "FluxTransformer2DModel", "attention_head_dim": 128,
      "guidance_embeds": true, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
      "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768})";
    auto ckpt = Checkpoint::open(root);
    EXPECT_EQ(ckpt.files().size(), 3u);
    EXPECT_NE(ckpt.config_path().find("transformer/config.json"), std::string::npos);
    EXPECT_EQ(ckpt.tensors().size(), 1160u);
    expect_fits(ckpt, "flux", "diffusers", "dev");
  }
  {
    const std::string wan = tmp.path + "/wan13";
    mkdir(wan.c_str(), 0755);
    write_sparse(wan + "/diffusion_pytorch_model.safetensors",
                 test::wan_original_layout(1536, 8960, 30));
    std::ofstream(wan + "/config.json")
        << R"({"_class_name": "WanModel", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960,
      "freq_dim": 256, "in_dim": 16, "model_type": "t2v", "num_heads": 12, "num_layers": 30, "out_dim": 16, "text_len": 512})";
    auto ckpt = Checkpoint::open(wan);
    EXPECT_EQ(ckpt.tensors().size(), 825u);
    EXPECT_EQ(ckpt.data_bytes(), int64_t{1418996800} * 4);
    expect_fits(ckpt, "wan", "wan-original", "t2v-1.3B");
  }
  {
    const std::string wan = tmp.path + "/wan14";
    mkdir(wan.c_str(), 0755);
    write_sharded(wan, "diffusion_pytorch_model", test::wan_original_layout(5120, 13824, 40), 6);
    auto ckpt = Checkpoint::open(wan);
    EXPECT_EQ(ckpt.files().size(), 6u);
    EXPECT_EQ(ckpt.tensors().size(), 1095u);
    expect_fits(ckpt, "wan", "wan-original", "t2v-14B");
    EXPECT_EQ(std::get<WanConfig>(identify(ckpt).config).heads, 40);
  }
  {
    // Wan2.1-T2V-1.3B-Diffusers: transformer/ in 2 shards.
    const std::string root = tmp.path + "/Wan-Diffusers", dir = root + "/transformer";
    mkdir(root.c_str(), 0755);
    mkdir(dir.c_str(), 0755);
    models::SkeletonScope skeleton;
    WanTransformer model(WanConfig::preset("full"));
    write_sharded(dir, "diffusion_pytorch_model", layout_of(*model, "F32"), 2);
    auto ckpt = Checkpoint::open(root);
    expect_fits(ckpt, "wan", "diffusers", "t2v-1.3B");
  }
  {
    // Qwen-Image as diffusers ships it: transformer/ in shards, bf16.
    const std::string root = tmp.path + "/Qwen-Image", dir = root + "/transformer";
    mkdir(root.c_str(), 0755);
    mkdir(dir.c_str(), 0755);
    models::SkeletonScope skeleton;
    QwenImageTransformer model(QwenImageConfig::preset("full"));
    write_sharded(dir, "diffusion_pytorch_model", layout_of(*model, "BF16"), 9);
    std::ofstream(dir + "/config.json")
        << R"({"_class_name": "QwenImageTransformer2DModel", "attention_head_dim": 128,
      "axes_dims_rope": [16, 56, 56], "in_channels": 64, "joint_attention_dim": 3584, "num_attention_heads": 24,
      "num_layers": 60, "out_channels": 16, "patch_size": 2})";
    auto ckpt = Checkpoint::open(root);
    EXPECT_EQ(ckpt.files().size(), 9u);
    expect_fits(ckpt, "qwen-image", "diffusers", "qwen-image");
    EXPECT_EQ(std::get<QwenImageConfig>(identify(ckpt).config).blocks, 60);
  }
  const int64_t grew = resident_bytes() - before;
  EXPECT_LT(grew, int64_t{600} * 1000 * 1000) << "resident grew by " << grew;
}

namespace {

std::map<std::string, at::Tensor> state_of(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> s;
  for (const auto& p : m.named_parameters(true)) s[p.key()] = p.value().detach().clone();
  return s;
}

// diffusers' Flux names back to Black Forest Labs' (the inverse of the
// conversion, written from the reference's fusing: qkv = [q; k; v],
// linear1 = [q; k; v; mlp], final modulation stored (shift, scale)).
std::map<std::string, at::Tensor> flux_to_bfl(const std::map<std::string, at::Tensor>& d,
                                              int64_t dual, int64_t single, bool guidance) {
  std::map<std::string, at::Tensor> o;
  auto both = [&](const std::string& to, const std::string& from) {
    for (const char* s : {".weight", ".bias"}) o[to + s] = d.at(from + s);
  };
  both("img_in", "x_embedder");
  both("txt_in", "context_embedder");
  both("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1");
  both("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2");
  both("vector_in.in_layer", "time_text_embed.text_embedder.linear_1");
  both("vector_in.out_layer", "time_text_embed.text_embedder.linear_2");
  if (guidance) {
    both("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1");
    both("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2");
  }
  for (int64_t i = 0; i < dual; ++i) {
    const std::string b = "double_blocks." + std::to_string(i) + ".",
                      t = "transformer_blocks." + std::to_string(i) + ".";
    both(b + "img_mod.lin", t + "norm1.linear");
    both(b + "txt_mod.lin", t + "norm1_context.linear");
    for (const char* s : {".weight", ".bias"}) {
      o[b + "img_attn.qkv" + s] = at::cat(
          {d.at(t + "attn.to_q" + s), d.at(t + "attn.to_k" + s), d.at(t + "attn.to_v" + s)});
      o[b + "txt_attn.qkv" + s] =
          at::cat({d.at(t + "attn.add_q_proj" + s), d.at(t + "attn.add_k_proj" + s),
                   d.at(t + "attn.add_v_proj" + s)});
    }
    o[b + "img_attn.norm.query_norm.scale"] = d.at(t + "attn.norm_q.weight");
    o[b + "img_attn.norm.key_norm.scale"] = d.at(t + "attn.norm_k.weight");
    o[b + "txt_attn.norm.query_norm.scale"] = d.at(t + "attn.norm_added_q.weight");
    o[b + "txt_attn.norm.key_norm.scale"] = d.at(t + "attn.norm_added_k.weight");
    both(b + "img_attn.proj", t + "attn.to_out.0");
    both(b + "txt_attn.proj", t + "attn.to_add_out");
    both(b + "img_mlp.0", t + "ff.net.0.proj");
    both(b + "img_mlp.2", t + "ff.net.2");
    both(b + "txt_mlp.0", t + "ff_context.net.0.proj");
    both(b + "txt_mlp.2", t + "ff_context.net.2");
  }
  for (int64_t i = 0; i < single; ++i) {
    const std::string b = "single_blocks." + std::to_string(i) + ".",
                      t = "single_transformer_blocks." + std::to_string(i) + ".";
    for (const char* s : {".weight", ".bias"}) {
      o[b + "linear1" + s] = at::cat({d.at(t + "attn.to_q" + s), d.at(t + "attn.to_k" + s),
                                      d.at(t + "attn.to_v" + s), d.at(t + "proj_mlp" + s)});
    }
    both(b + "linear2", t + "proj_out");
    both(b + "modulation.lin", t + "norm.linear");
    o[b + "norm.query_norm.scale"] = d.at(t + "attn.norm_q.weight");
    o[b + "norm.key_norm.scale"] = d.at(t + "attn.norm_k.weight");
  }
  both("final_layer.linear", "proj_out");
  for (const char* s : {".weight", ".bias"}) {
    auto h = d.at(std::string("norm_out.linear") + s).chunk(2, 0);  // (scale, shift)
    o[std::string("final_layer.adaLN_modulation.1") + s] = at::cat({h[1], h[0]});
  }
  return o;
}

void expect_same_state(const torch::nn::Module& m, const std::map<std::string, at::Tensor>& want) {
  for (const auto& p : m.named_parameters(true)) {
    ASSERT_TRUE(want.count(p.key())) << p.key();
    EXPECT_TRUE(at::equal(p.value(), want.at(p.key()))) << p.key();
  }
}

}  // namespace

// A tiny model written in each published layout loads back to the same weights.
TEST(Checkpoints, EveryLayoutLoadsTheSameWeights) {
  TempDir tmp;
  {
    auto c = FluxConfig::preset("tiny");
    FluxTransformer flux(c);
    models::seeded_init(*flux, 3);
    auto state = state_of(*flux);
    models::write_safetensors(tmp.path + "/diffusers.safetensors", state);
    models::write_safetensors(tmp.path + "/bfl.safetensors",
                              flux_to_bfl(state, c.dual_blocks, c.single_blocks, c.guidance));
    for (const char* file : {"diffusers", "bfl"}) {
      auto ckpt = Checkpoint::open(tmp.path + "/" + file + ".safetensors");
      auto found = identify(ckpt);
      EXPECT_EQ(found.layout, file);
      auto model = build_model(found);
      load_checkpoint(*model, ckpt, found);
      expect_same_state(*model, state);
    }
  }
  {
    auto c = WanConfig::preset("tiny");
    WanTransformer wan(c);
    models::seeded_init(*wan, 4);
    auto state = state_of(*wan);
    // Wan's own names, from the reference's list; each maps onto one model name.
    std::map<std::string, at::Tensor> original;
    for (const auto& [name, spec] : test::wan_original_layout(
             c.hidden, c.ffn, c.blocks, c.in_channels, c.out_channels, c.text_dim, c.freq_dim)) {
      const std::string to = wan_original_to_diffusers(name);
      ASSERT_TRUE(state.count(to)) << name << " -> '" << to << "'";
      original[name] = state.at(to);
    }
    EXPECT_EQ(original.size(), state.size());
    const std::string dir = tmp.path + "/wan";
    mkdir(dir.c_str(), 0755);
    models::write_safetensors(dir + "/diffusion_pytorch_model.safetensors", original);
    std::ofstream(dir + "/config.json")
        << R"({"_class_name": "WanModel", "dim": 64, "num_heads": 4, "num_layers": 2})";
    auto ckpt = Checkpoint::open(dir + "/diffusion_pytorch_model.safetensors");
    auto found = identify(ckpt);
    EXPECT_EQ(found.layout, "wan-original");
    auto model = build_model(found);
    load_checkpoint(*model, ckpt, found);
    expect_same_state(*model, state);
    // fp32 file, fp32 model: the parameters are the file's pages, not copies.
    auto params = model->named_parameters(true);
    EXPECT_EQ(params["blocks.0.attn1.to_q.weight"].data_ptr(),
              ckpt.tensor("blocks.0.self_attn.q.weight").data_ptr());
  }
}

TEST(Checkpoints, WrongInputsAreRefusedWithTheReason) {
  TempDir tmp;
  auto expect_error = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no error, expected: " << part;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error([&] { Checkpoint::open(tmp.path); }, "holds no .safetensors file");
  expect_error([&] { Checkpoint::open(tmp.path + "/nope.safetensors"); },
               "cannot open checkpoint file");
  write_sparse_safetensors(tmp.path + "/a.safetensors", {{"x", {at::kFloat, {2}}}});
  write_sparse_safetensors(tmp.path + "/b.safetensors", {{"y", {at::kFloat, {2}}}});
  expect_error([&] { Checkpoint::open(tmp.path); },
               "holds several checkpoints (a.safetensors, b.safetensors)");
  expect_error([&] { identify(Checkpoint::open(tmp.path + "/a.safetensors")); },
               "is none of the layouts spdit reads");
  // An index naming a shard that does not hold the tensor.
  std::ofstream(tmp.path + "/m.safetensors.index.json")
      << R"({"weight_map": {"x": "b.safetensors"}})";
  expect_error([&] { Checkpoint::open(tmp.path + "/m.safetensors.index.json"); },
               "which does not hold it");
  // Flux with a config.json that disagrees with its tensors.
  const std::string flux = tmp.path + "/flux";
  mkdir(flux.c_str(), 0755);
  write_sparse(flux + "/f.safetensors", test::flux_bfl_layout(64, 64, 64, 32, 16, 16, 2, 2, true));
  std::ofstream(flux + "/config.json") << R"({"num_attention_heads": 3, "attention_head_dim": 16})";
  expect_error([&] { identify(Checkpoint::open(flux)); },
               "3 heads of 16 do not make the hidden size 64");
  // Odd RoPE axes sum to the head dim but rotate no whole channel pairs.
  std::ofstream(flux + "/config.json")
      << R"({"num_attention_heads": 4, "attention_head_dim": 16, "axes_dims_rope": [5, 5, 6]})";
  expect_error([&] { identify(Checkpoint::open(flux)); },
               "RoPE axis sizes must be even and not negative, not 5");
  // Wan image-to-video: named as such.
  auto i2v = test::wan_original_layout(64, 128, 1);
  i2v["blocks.0.cross_attn.k_img.weight"] = {"F32", {64, 64}};
  write_sparse(tmp.path + "/i2v.safetensors", i2v);
  expect_error([&] { identify(Checkpoint::open(tmp.path + "/i2v.safetensors")); },
               "image-to-video");
  // A FIFO is no checkpoint file.
  mkfifo((tmp.path + "/fifo.safetensors").c_str(), 0600);
  expect_error([&] { Checkpoint::open(tmp.path + "/fifo.safetensors"); },
               "is a FIFO; give a regular .safetensors file");
  // A checkpoint of another size than the model it is loaded into.
  FluxTransformer tiny(FluxConfig::preset("tiny"));
  models::write_safetensors(tmp.path + "/tiny.safetensors", state_of(*tiny));
  auto ckpt = Checkpoint::open(tmp.path + "/tiny.safetensors");
  FluxTransformer small(FluxConfig::preset("small"));
  expect_error([&] { load_checkpoint(*small, ckpt, identify(ckpt)); },
               "x_embedder.weight [64, 64] (model [256, 64])");
}

// `spdit run --weights`: the checkpoint decides the model and its size, its
// weights are used in place, and the SP run matches one rank.
TEST(Checkpoints, RunTakesModelAndSizeFromTheCheckpoint) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  WanConfig c = WanConfig::preset("tiny");
  WanTransformer wan(c);
  models::seeded_init(*wan, 12);
  auto state = state_of(*wan);
  std::map<std::string, at::Tensor> original;
  for (const auto& [name, spec] : test::wan_original_layout(
           c.hidden, c.ffn, c.blocks, c.in_channels, c.out_channels, c.text_dim, c.freq_dim)) {
    original[name] = state.at(wan_original_to_diffusers(name));
  }
  const std::string dir = tmp.path + "/Wan-tiny";
  mkdir(dir.c_str(), 0755);
  models::write_safetensors(dir + "/diffusion_pytorch_model.safetensors", original);
  std::ofstream(dir + "/config.json")
      << R"({"_class_name": "WanModel", "dim": 64, "num_heads": 4, "num_layers": 2})";
  auto r = test::run_command(
      std::string(SPDIT_BIN) + " run --weights " + dir +
      " --nproc 2 --height 64 --width 64 --frames 5 --text-len 9 --steps 2 --check");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("spdit run: wan/t2v (hidden 64) from " + dir), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos) << r.output;
  r = test::run_command(std::string(SPDIT_BIN) + " run --model flux --weights " + dir +
                        " --nproc 1 --steps 1");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("holds a wan checkpoint (wan-original layout"), std::string::npos)
      << r.output;
}
