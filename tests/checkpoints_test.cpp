// Real-size models without their memory, and checkpoints read as they ship.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "spdit/models/flux.h"
#include "spdit/models/skeleton.h"
#include "spdit/models/wan.h"

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

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/layers.h"
#include "spdit/models/weights.h"
#include "support/layouts.h"

using namespace spdit::checkpoints;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/spdit-ckpt-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

// Splits `layout` into n shards named as diffusers and Wan name them, with
// the index that maps each tensor to its shard.
void write_sharded(const std::string& dir, const std::string& stem, const test::Layout& layout, int n) {
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
    write_sparse_safetensors(dir + "/" + file, shards[k]);
  }
  std::ofstream(dir + "/" + stem + ".safetensors.index.json") << index.dump(1);
}

test::Layout layout_of(const torch::nn::Module& model, at::ScalarType dt) {
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
    write_sparse_safetensors(dev, test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, true));
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
    write_sparse_safetensors(schnell, test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, false));
    auto ckpt = Checkpoint::open(schnell);
    EXPECT_EQ(ckpt.tensors().size(), 776u);
    expect_fits(ckpt, "flux", "bfl", "schnell");
    EXPECT_FALSE(std::get<FluxConfig>(identify(ckpt).config).guidance);
  }
  {
    const std::string fill = tmp.path + "/flux1-fill-dev.safetensors";
    write_sparse_safetensors(fill, test::flux_bfl_layout(3072, 384, 64, 4096, 768, 128, 19, 38, true));
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
    write_sharded(dir, "diffusion_pytorch_model", layout_of(*model, at::kBFloat16), 3);
    std::ofstream(dir + "/config.json") << R"({"_class_name": "FluxTransformer2DModel", "attention_head_dim": 128,
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
    write_sparse_safetensors(wan + "/diffusion_pytorch_model.safetensors", test::wan_original_layout(1536, 8960, 30));
    std::ofstream(wan + "/config.json") << R"({"_class_name": "WanModel", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960,
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
    write_sharded(dir, "diffusion_pytorch_model", layout_of(*model, at::kFloat), 2);
    auto ckpt = Checkpoint::open(root);
    expect_fits(ckpt, "wan", "diffusers", "t2v-1.3B");
  }
  const int64_t grew = resident_bytes() - before;
  EXPECT_LT(grew, int64_t{600} * 1000 * 1000) << "resident grew by " << grew;
}
