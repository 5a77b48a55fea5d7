// `spdit inspect` on real-size checkpoints written sparse (a header and a data
// hole): real processes, as a user runs it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "support/layouts.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace {

const std::string kSpdit = SPDIT_BIN;

int64_t element_size(const std::string& dtype) { return dtype == "F32" ? 4 : 2; }

// The safetensors header of `layout`, and a data region the file system does not store.
void write_sparse(const std::string& path, const spdit::test::Layout& layout) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, spec] : layout) {
    uint64_t n = element_size(spec.first);
    for (int64_t d : spec.second) n *= d;
    header[name] = {
        {"dtype", spec.first}, {"shape", spec.second}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary);
  const uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>(len >> (8 * i) & 0xff));
  f << h;
  f.close();
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(8 + len + offset)), 0);
}

}  // namespace

TEST(InspectCli, RealSizeFluxDevAndWanReadFromTheirHeadersAlone) {
  spdit::test::TempDir tmp;
  const std::string flux = tmp.path + "/flux1-dev.safetensors";
  write_sparse(flux, spdit::test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, true));
  auto r = spdit::test::run_command(kSpdit + " inspect " + flux);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("tensors: 780, 23.8 GB (BF16 780 tensors 23.8 GB)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("model: flux, bfl layout, variant dev"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("hidden 3072, 24 heads of 128, 19 dual + 38 single blocks"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("against the model (11901408320 parameters): every tensor fits"),
            std::string::npos)
      << r.output;

  const std::string wan = tmp.path + "/Wan2.1-T2V-14B";
  ASSERT_EQ(system(("mkdir -p '" + wan + "'").c_str()), 0);
  write_sparse(wan + "/diffusion_pytorch_model.safetensors",
               spdit::test::wan_original_layout(5120, 13824, 40));
  r = spdit::test::run_command(kSpdit + " inspect " + wan);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("model: wan, wan-original layout, variant t2v-14B"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("14288491584 parameters"), std::string::npos) << r.output;

  // A checkpoint missing a tensor: named, exit 1.
  auto broken = spdit::test::flux_bfl_layout(3072, 64, 64, 4096, 768, 128, 19, 38, true);
  broken.erase("double_blocks.3.img_mlp.2.bias");
  write_sparse(tmp.path + "/broken.safetensors", broken);
  r = spdit::test::run_command(kSpdit + " inspect " + tmp.path + "/broken.safetensors");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("missing: transformer_blocks.3.ff.net.2.bias"), std::string::npos)
      << r.output;
}
