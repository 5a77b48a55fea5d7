// Models in bf16: the same weights as fp32, fp32 where precision needs it,
// outputs within the stated tolerance of fp32, and SP runs matching one rank.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/precision.h"
#include "spdit/models/weights.h"
#include "support/ranks.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

using namespace spdit;
using namespace spdit::models;
using test::error_of;
using test::TempDir;

namespace {

double rel_err(const at::Tensor& got, const at::Tensor& want) {
  return (got.to(at::kFloat) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

RunSize size_for(const std::string& model) { return {112, 144, model == "wan" ? 5 : 1, 9, 1}; }

}  // namespace

TEST(Precision, DtypeNamesAndTheModulesKeptInFp32) {
  EXPECT_EQ(parse_dtype("bf16"), at::kBFloat16);
  EXPECT_EQ(parse_dtype("float32"), at::kFloat);
  EXPECT_EQ(dtype_name(at::kHalf), "fp16");
  EXPECT_NE(
      error_of([] { parse_dtype("int8"); }).find("unknown dtype 'int8'; use bf16, fp16 or fp32"),
      std::string::npos);
  const auto keep = keep_in_fp32_modules(WanConfig::preset("tiny"));
  for (const char* fp32 :
       {"condition_embedder.time_embedder.linear_1.weight", "blocks.3.scale_shift_table",
        "scale_shift_table", "blocks.0.norm2.weight", "blocks.0.norm2.bias"}) {
    EXPECT_EQ(parameter_dtype(fp32, at::kBFloat16, keep), at::kFloat) << fp32;
  }
  // A component must match whole: norm_q is not norm1, time_proj is not time_embedder.
  for (const char* low : {"blocks.0.attn1.norm_q.weight", "condition_embedder.time_proj.weight",
                          "blocks.0.ffn.net.0.proj.weight", "proj_out.weight"}) {
    EXPECT_EQ(parameter_dtype(low, at::kBFloat16, keep), at::kBFloat16) << low;
  }
  EXPECT_TRUE(keep_in_fp32_modules(FluxConfig::preset("tiny")).empty());
}

TEST(Precision, Fp16IsRefusedWhereThisLibTorchCannotMultiplyIt) {
  bool runs = true;
  try {
    auto a = at::ones({2, 2}, at::kHalf);
    (void)at::linear(a, a);
  } catch (const c10::Error&) {
    runs = false;
  }
  const auto err = error_of([] { check_dtype_runs(at::kHalf); });
  if (runs) {
    EXPECT_EQ(err, "<no error>");
  } else {
    EXPECT_NE(err.find("cannot multiply fp16 matrices on cpu"), std::string::npos) << err;
    EXPECT_NE(err.find("use --dtype bf16"), std::string::npos) << err;
    EXPECT_NE(error_of([] {
                make_pipeline("flux", "tiny", 1, Weights::kSeeded, at::kHalf);
              }).find("fp16"),
              std::string::npos);
  }
  EXPECT_EQ(error_of([] { check_dtype_runs(at::kBFloat16); }), "<no error>");
}

// The same seed gives the same weights in every dtype (rounded), the listed
// modules stay fp32, and the output stays within the stated tolerance of
// fp32 -- while differing from it, so that the model did compute in bf16.
TEST(Precision, Bf16ModelsMatchFp32WithinTheStatedTolerance) {
  const double tol = tolerance_against_fp32(at::kBFloat16);
  for (const auto& name : model_names()) {
    auto f32 = make_pipeline(name, "small", 7);
    auto b16 = make_pipeline(name, "small", 7, Weights::kSeeded, at::kBFloat16);
    EXPECT_EQ(b16->dtype(), at::kBFloat16);
    const auto keep = keep_in_fp32_modules(preset_config(name, "small"));
    auto want = f32->model().named_parameters(true);
    for (const auto& p : b16->model().named_parameters(true)) {
      const auto dtype = parameter_dtype(p.key(), at::kBFloat16, keep);
      ASSERT_EQ(p.value().scalar_type(), dtype) << name << " " << p.key();
      EXPECT_TRUE(at::equal(p.value(), want[p.key()].to(dtype))) << name << " " << p.key();
    }
    auto size = size_for(name);
    auto x = f32->prepare(size, 8);
    b16->prepare(size, 8);
    auto expected = f32->velocity(x, 0.7);
    auto got = b16->velocity(x, 0.7);
    EXPECT_EQ(got.scalar_type(), at::kFloat) << "velocities reach the sampler in fp32";
    const double err = rel_err(got, expected);
    std::cout << name << ": bf16 vs fp32 rel err " << err << " (tolerance " << tol << ")\n";
    EXPECT_LE(err, tol) << name;
    EXPECT_GE(err, 1e-4) << name << ": no bf16 rounding at all, so the model did not run in bf16";
  }
}

// Under SP in bf16, every layout of 2 and 4 ranks against one rank in bf16.
TEST(Precision, Bf16UnderSpMatchesOneRankInBf16) {
  const double tol = tolerance_against_one_rank(at::kBFloat16);
  for (const auto& name : model_names()) {
    auto size = size_for(name);
    auto single = make_pipeline(name, "tiny", 3, Weights::kSeeded, at::kBFloat16);
    auto x = single->prepare(size, 4);
    auto expected = single->velocity(x, 0.7);
    for (auto [u, r] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {4, 1}, {2, 2}, {1, 4}}) {
      double worst = 0;
      std::mutex m;
      test::run_ranks(u * r, [&](World&) {
        auto pipe = make_pipeline(name, "tiny", 3, Weights::kSeeded, at::kBFloat16);
        pipe->prepare(size, 4);
        apply_sequence_parallel(pipe->model(), SequenceParallelConfig{u, r});
        auto got = pipe->velocity(x, 0.7);
        std::lock_guard<std::mutex> lock(m);
        worst = std::max(worst, rel_err(got, expected));
      });
      std::cout << name << " " << u << "x" << r << ": bf16 SP vs one rank rel err " << worst
                << "\n";
      EXPECT_LE(worst, tol) << name << " ulysses " << u << " ring " << r;
    }
  }
}

// A checkpoint runs in the dtype it is stored in unless asked otherwise; a
// tensor already in the wanted dtype is the file's pages, the others are
// converted once, and converted_bytes counts exactly those.
TEST(Precision, CheckpointsLoadInTheAskedDtypeInPlaceWherePossible) {
  TempDir tmp;
  auto wan = make_pipeline("wan", "tiny", 5);  // fp32, as Wan ships
  std::map<std::string, at::Tensor> state;
  for (const auto& p : wan->model().named_parameters(true)) state[p.key()] = p.value();
  const std::string dir = tmp.path + "/wan";
  mkdir(dir.c_str(), 0755);
  write_safetensors(dir + "/diffusion_pytorch_model.safetensors", state);
  std::ofstream(dir + "/config.json")
      << R"({"_class_name": "WanTransformer3DModel", "num_attention_heads": 4,
                                            "attention_head_dim": 16, "num_layers": 2})";
  auto ckpt = checkpoints::Checkpoint::open(dir);
  auto found = checkpoints::identify(ckpt);
  EXPECT_EQ(found.stored_dtype, at::kFloat);
  EXPECT_EQ(checkpoints::converted_bytes(ckpt, found, at::kFloat), 0);

  auto pipe = checkpoints::make_pipeline(ckpt, found, 0, at::kBFloat16);
  EXPECT_EQ(pipe->dtype(), at::kBFloat16);
  const auto keep = keep_in_fp32_modules(found.config);
  int64_t converted = 0;
  for (const auto& p : pipe->model().named_parameters(true)) {
    const auto want = parameter_dtype(p.key(), at::kBFloat16, keep);
    ASSERT_EQ(p.value().scalar_type(), want) << p.key();
    const bool in_place = p.value().data_ptr() == ckpt.tensor(p.key()).data_ptr();
    EXPECT_EQ(in_place, want == at::kFloat) << p.key();
    if (!in_place) converted += p.value().numel() * p.value().element_size();
    EXPECT_TRUE(at::equal(p.value(), state.at(p.key()).to(want))) << p.key();
  }
  EXPECT_EQ(checkpoints::converted_bytes(ckpt, found, at::kBFloat16), converted);

  // A bf16 file: bf16 by default, in place except what stays fp32.
  std::map<std::string, at::Tensor> half;
  for (const auto& [n, t] : state) half[n] = t.to(at::kBFloat16);
  const std::string dir16 = tmp.path + "/wan16";
  mkdir(dir16.c_str(), 0755);
  write_safetensors(dir16 + "/diffusion_pytorch_model.safetensors", half);
  std::ofstream(dir16 + "/config.json")
      << R"({"num_attention_heads": 4, "attention_head_dim": 16, "num_layers": 2})";
  auto ckpt16 = checkpoints::Checkpoint::open(dir16);
  auto found16 = checkpoints::identify(ckpt16);
  EXPECT_EQ(found16.stored_dtype, at::kBFloat16);
  auto pipe16 = checkpoints::make_pipeline(ckpt16, found16, 0);
  EXPECT_EQ(pipe16->dtype(), at::kBFloat16);
  auto params = pipe16->model().named_parameters(true);
  EXPECT_EQ(params["blocks.0.attn1.to_q.weight"].data_ptr(),
            ckpt16.tensor("blocks.0.attn1.to_q.weight").data_ptr());
  EXPECT_EQ(params["blocks.0.norm2.weight"].scalar_type(), at::kFloat);
}

int64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// Converting a load reads the file once and gives its pages back: the
// resident set grows by the converted weights, not by those plus the file.
TEST(Precision, ConvertingALoadGivesTheFilePagesBack) {
  TempDir tmp;
  auto flux = make_pipeline("flux", "small", 5);
  std::map<std::string, at::Tensor> state;
  int64_t file_bytes = 0;
  for (const auto& p : flux->model().named_parameters(true)) {
    state[p.key()] = p.value();
    file_bytes += p.value().numel() * 4;
  }
  write_safetensors(tmp.path + "/flux.safetensors", state);
  flux.reset();
  state.clear();
  auto ckpt = checkpoints::Checkpoint::open(tmp.path + "/flux.safetensors");
  auto found = checkpoints::identify(ckpt);
  const int64_t before = resident_bytes();
  auto pipe = checkpoints::make_pipeline(ckpt, found, 0, at::kBFloat16);
  const int64_t grown = resident_bytes() - before;
  std::cout << "fp32 file " << file_bytes / 1e6 << " MB loaded as bf16: resident +" << grown / 1e6
            << " MB\n";
  EXPECT_LT(grown, file_bytes / 2 + file_bytes / 5)
      << "bf16 weights are half the file; the file's pages stayed";
}

// The command: --dtype bf16 runs with parity across ranks and the predicted
// bytes (bf16 moves half of fp32's); a mistaken --dtype is refused; weights
// that fit only in bf16 are refused in fp32 with bf16 proposed.
TEST(Precision, RunInBf16AsSeparateProcesses) {
  if (access(SPDIT_BIN, X_OK) != 0) GTEST_SKIP() << "the spdit command is not built here";
  TempDir tmp;
  const std::string bin = SPDIT_BIN;
  const std::string common =
      " run --model flux --preset tiny --height 64 --width 80 --text-len 7 --steps 2 --nproc 2 "
      "--ulysses 2";
  auto r32 = test::run_command(bin + common + " --json " + tmp.path + "/f32.json");
  ASSERT_EQ(r32.code, 0) << r32.output;
  auto r16 =
      test::run_command(bin + common + " --dtype bf16 --check --json " + tmp.path + "/b16.json");
  ASSERT_EQ(r16.code, 0) << r16.output;
  EXPECT_NE(r16.output.find("flux/tiny 64x80, text 7, bf16"), std::string::npos) << r16.output;
  EXPECT_NE(r16.output.find("(match)"), std::string::npos) << r16.output;
  EXPECT_NE(r16.output.find("PASS"), std::string::npos) << r16.output;
  auto j32 = nlohmann::json::parse(std::ifstream(tmp.path + "/f32.json"));
  auto j16 = nlohmann::json::parse(std::ifstream(tmp.path + "/b16.json"));
  EXPECT_EQ(j16["dtype"], "bf16");
  EXPECT_EQ(j32["dtype"], "fp32");
  EXPECT_EQ(j16["comm_bytes_by_kind"]["all_to_all"]["sent"].get<int64_t>() * 2,
            j32["comm_bytes_by_kind"]["all_to_all"]["sent"].get<int64_t>());
  EXPECT_EQ(j16["weight_bytes"].get<int64_t>() * 2, j32["weight_bytes"].get<int64_t>());

  auto bad = test::run_command(bin + common + " --dtype int8");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("--dtype"), std::string::npos) << bad.output;

  // flux small: 4 * ~1e7 parameters; a budget between its bf16 and fp32 bytes.
  const int64_t params = parameter_count("flux", "small");
  const int64_t limit_mb = params * 3 / 1000000;
  const std::string limited =
      "SPDIT_MEMORY_LIMIT_MB=" + std::to_string(limit_mb) + " " + bin +
      " run --model flux --preset small --height 32 --width 32 --steps 1 --nproc 1";
  auto refused = test::run_command(limited);
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.output.find("out of memory before any work"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("--dtype bf16 (half the bytes)"), std::string::npos)
      << refused.output;
  auto fits = test::run_command(limited + " --dtype bf16");
  EXPECT_EQ(fits.code, 0) << fits.output;
}
