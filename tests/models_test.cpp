// Reference models: their plans under SP (in-process), and weights I/O.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>
#include <cstdio>
#include <fstream>

#include "spdit/hooks/sequence_parallel.h"
#include "spdit/models/flux.h"
#include "spdit/models/pipeline.h"
#include "spdit/models/qwen_image.h"
#include "spdit/models/wan.h"
#include "spdit/models/weights.h"
#include "support/ranks.h"
#include "support/subprocess.h"

using namespace spdit;
using namespace spdit::models;

namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/spdit_test_" + std::to_string(getpid()) + "_" + name;
}

std::map<std::string, at::Tensor> params_of(torch::nn::Module& m) {
  std::map<std::string, at::Tensor> s;
  for (auto& p : m.named_parameters()) s[p.key()] = p.value();
  return s;
}

using test::error_of;

}  // namespace

TEST(Models, EveryModelRunsUnderSpAndMatchesOneRank) {
  for (const auto& name : model_names()) {
    RunSize size{112, 144, name == "wan" ? 5 : 1, 9, 1};  // --frames is for video models only
    auto single = make_pipeline(name, "tiny", 3);
    auto x = single->prepare(size, 4);
    auto expected = single->velocity(x, 0.7);
    test::run_ranks(4, [&](World& w) {
      auto pipe = make_pipeline(name, "tiny", 3);
      pipe->prepare(size, 4);
      apply_sequence_parallel(pipe->model(), SequenceParallelConfig{2, 2});
      auto got = pipe->velocity(x, 0.7);
      ASSERT_EQ(got.sizes(), expected.sizes()) << name;
      EXPECT_LE((got - expected).abs().max().item<double>(), 1e-5) << name;
    });
  }
}

TEST(Models, WanPerTokenTimestepsAreSplitScalarOnesAreNot) {
  WanTransformer single(WanConfig::preset("tiny"));
  seeded_init(*single, 5);
  auto gen = at::detail::createCPUGenerator(6);
  auto video = at::randn({1, 16, 2, 8, 10}, gen);  // 2 * 4 * 5 = 40 tokens
  auto text = at::randn({1, 5, 32}, gen);
  auto per_token = at::rand({1, 40}, gen);
  auto expected = single->call({video, per_token, text}).tensor();
  test::run_ranks(3, [&](World& w) {  // 40 does not divide by 3: padded
    WanTransformer m(WanConfig::preset("tiny"));
    seeded_init(*m, 5);
    apply_sequence_parallel(*m, SequenceParallelConfig{3, 1});
    auto got = m->call({video, per_token, text}).tensor();
    EXPECT_LE((got - expected).abs().max().item<double>(), 1e-5);
  });
}

TEST(Weights, SaveThenLoadIsBitIdentical) {
  FluxTransformer a(FluxConfig::preset("tiny")), b(FluxConfig::preset("tiny"));
  seeded_init(*a, 1);
  seeded_init(*b, 2);
  const auto path = temp_path("flux.safetensors");
  save_weights(*a, path);
  load_weights(*b, path);
  for (auto& [name, t] : params_of(*a)) EXPECT_TRUE(at::equal(t, params_of(*b)[name])) << name;
  std::remove(path.c_str());
}

TEST(Weights, DiffusersNamesOfFlux) {
  FluxTransformer m(FluxConfig::preset("tiny"));
  auto p = params_of(*m);
  for (const char* key :
       {"x_embedder.weight", "context_embedder.weight",
        "time_text_embed.timestep_embedder.linear_1.weight",
        "time_text_embed.guidance_embedder.linear_2.bias",
        "time_text_embed.text_embedder.linear_1.weight", "transformer_blocks.0.norm1.linear.weight",
        "transformer_blocks.1.attn.to_q.weight", "transformer_blocks.0.attn.norm_added_k.weight",
        "transformer_blocks.0.attn.to_out.0.weight", "transformer_blocks.0.attn.to_add_out.bias",
        "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff_context.net.2.bias",
        "single_transformer_blocks.1.proj_mlp.weight",
        "single_transformer_blocks.0.norm.linear.weight",
        "single_transformer_blocks.0.attn.norm_k.weight", "norm_out.linear.weight",
        "proj_out.weight"}) {
    EXPECT_TRUE(p.count(key)) << key;
  }
}

TEST(Weights, FluxOriginalLayoutLoadsIntoTheDiffusersModel) {
  FluxTransformer a(FluxConfig::preset("tiny"));
  seeded_init(*a, 9);
  auto d = params_of(*a);
  // Write the original single-file layout by hand: fused qkv and linear1,
  // (shift, scale) order at the end.
  std::map<std::string, at::Tensor> bfl;
  auto put = [&](const std::string& to, const std::string& from) { bfl[to] = d.at(from); };
  for (const char* s : {"weight", "bias"}) {
    std::string w = s;
    put("img_in." + w, "x_embedder." + w);
    put("txt_in." + w, "context_embedder." + w);
    put("time_in.in_layer." + w, "time_text_embed.timestep_embedder.linear_1." + w);
    put("time_in.out_layer." + w, "time_text_embed.timestep_embedder.linear_2." + w);
    put("guidance_in.in_layer." + w, "time_text_embed.guidance_embedder.linear_1." + w);
    put("guidance_in.out_layer." + w, "time_text_embed.guidance_embedder.linear_2." + w);
    put("vector_in.in_layer." + w, "time_text_embed.text_embedder.linear_1." + w);
    put("vector_in.out_layer." + w, "time_text_embed.text_embedder.linear_2." + w);
    put("final_layer.linear." + w, "proj_out." + w);
    auto h = d.at("norm_out.linear." + w).chunk(2, 0);
    bfl["final_layer.adaLN_modulation.1." + w] = at::cat({h[1], h[0]});
    for (int i = 0; i < 2; ++i) {
      const std::string o = "double_blocks." + std::to_string(i) + ".",
                        n = "transformer_blocks." + std::to_string(i) + ".";
      put(o + "img_mod.lin." + w, n + "norm1.linear." + w);
      put(o + "txt_mod.lin." + w, n + "norm1_context.linear." + w);
      bfl[o + "img_attn.qkv." + w] = at::cat(
          {d.at(n + "attn.to_q." + w), d.at(n + "attn.to_k." + w), d.at(n + "attn.to_v." + w)});
      bfl[o + "txt_attn.qkv." + w] =
          at::cat({d.at(n + "attn.add_q_proj." + w), d.at(n + "attn.add_k_proj." + w),
                   d.at(n + "attn.add_v_proj." + w)});
      put(o + "img_attn.proj." + w, n + "attn.to_out.0." + w);
      put(o + "txt_attn.proj." + w, n + "attn.to_add_out." + w);
      put(o + "img_mlp.0." + w, n + "ff.net.0.proj." + w);
      put(o + "img_mlp.2." + w, n + "ff.net.2." + w);
      put(o + "txt_mlp.0." + w, n + "ff_context.net.0.proj." + w);
      put(o + "txt_mlp.2." + w, n + "ff_context.net.2." + w);
      const std::string so = "single_blocks." + std::to_string(i) + ".",
                        sn = "single_transformer_blocks." + std::to_string(i) + ".";
      bfl[so + "linear1." + w] = at::cat({d.at(sn + "attn.to_q." + w), d.at(sn + "attn.to_k." + w),
                                          d.at(sn + "attn.to_v." + w), d.at(sn + "proj_mlp." + w)});
      put(so + "linear2." + w, sn + "proj_out." + w);
      put(so + "modulation.lin." + w, sn + "norm.linear." + w);
    }
  }
  for (int i = 0; i < 2; ++i) {
    const std::string o = "double_blocks." + std::to_string(i) + ".",
                      n = "transformer_blocks." + std::to_string(i) + ".";
    put(o + "img_attn.norm.query_norm.scale", n + "attn.norm_q.weight");
    put(o + "img_attn.norm.key_norm.scale", n + "attn.norm_k.weight");
    put(o + "txt_attn.norm.query_norm.scale", n + "attn.norm_added_q.weight");
    put(o + "txt_attn.norm.key_norm.scale", n + "attn.norm_added_k.weight");
    const std::string so = "single_blocks." + std::to_string(i) + ".",
                      sn = "single_transformer_blocks." + std::to_string(i) + ".";
    put(so + "norm.query_norm.scale", sn + "attn.norm_q.weight");
    put(so + "norm.key_norm.scale", sn + "attn.norm_k.weight");
  }
  const auto path = temp_path("flux_bfl.safetensors");
  write_safetensors(path, bfl);
  FluxTransformer b(FluxConfig::preset("tiny"));
  load_weights(*b, path);
  for (auto& [name, t] : params_of(*b)) EXPECT_TRUE(at::equal(t, d.at(name))) << name;
  std::remove(path.c_str());
}

TEST(Weights, MissingExtraAndMisshapedTensorsAreRefusedByName) {
  FluxTransformer m(FluxConfig::preset("tiny"));
  auto p = params_of(*m);
  auto missing = p;
  missing.erase("proj_out.bias");
  EXPECT_NE(error_of([&] {
              load_weights(*m, missing, "x");
            }).find("lack tensor(s) the model needs: proj_out.bias"),
            std::string::npos);
  auto extra = p;
  extra["bogus.weight"] = at::zeros({1});
  EXPECT_NE(error_of([&] { load_weights(*m, extra, "x"); }).find("does not have: bogus.weight"),
            std::string::npos);
  auto shaped = p;
  shaped["proj_out.weight"] = at::zeros({3, 3});
  auto msg = error_of([&] { load_weights(*m, shaped, "x"); });
  EXPECT_NE(msg.find("tensor 'proj_out.weight' has shape [3, 3] but the model expects [64, 64]"),
            std::string::npos)
      << msg;
}

TEST(Safetensors, AllDtypesRoundTrip) {
  std::map<std::string, at::Tensor> t = {{"f32", at::randn({2, 3})},
                                         {"bf16", at::randn({4}).to(at::kBFloat16)},
                                         {"f16", at::randn({1, 2}).to(at::kHalf)},
                                         {"i64", at::arange(5)},
                                         {"u8", at::arange(3).to(at::kByte)},
                                         {"b", at::ones({2}, at::kBool)},
                                         {"empty", at::zeros({0, 4})}};
  const auto path = temp_path("dtypes.safetensors");
  write_safetensors(path, t, {{"k", "v"}});
  auto back = read_safetensors(path);
  ASSERT_EQ(back.size(), t.size());
  for (auto& [k, v] : t) EXPECT_TRUE(at::equal(back.at(k), v)) << k;
  std::remove(path.c_str());
}

namespace {

std::string file_with_header(const std::string& json, const std::string& data) {
  std::string b(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(n >> (8 * i) & 0xff);
  return b + json + data;
}

}  // namespace

TEST(Safetensors, CorruptFilesAreRefusedWithTheReason) {
  struct Case {
    std::string bytes, expect;
  };
  const std::string eight(8, 'x');
  std::vector<Case> cases = {
      {"abc", "a header needs 8"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "more than the 100 MB limit"},
      {std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "truncated"},
      {file_with_header("{not json", ""), "not valid JSON"},
      {file_with_header("[1,2]", ""), "not a JSON object"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[2]}})", eight),
       "needs dtype, shape and data_offsets"},
      {file_with_header(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", eight),
       "unsupported dtype"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
       "not a non-negative integer"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", eight),
       "fall outside"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight),
       "fall outside"},
      {file_with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
       "needs 12"},
      {file_with_header(
           R"({"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})",
           eight),
       "absurdly large"},
  };
  for (const auto& c : cases) {
    auto msg = error_of([&] { parse_safetensors(c.bytes, "f.safetensors"); });
    EXPECT_NE(msg.find("'f.safetensors'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << msg;
  }
}

// Issue 18, 4.1: every model's own checkpoint loads back into it, whatever its
// names look like (Qwen-Image's `img_in.` once sent it through Flux's
// original-layout renaming).
TEST(Weights, EveryModelRoundTripsThroughItsOwnCheckpoint) {
  for (const auto& name : model_names()) {
    auto a = make_pipeline(name, "tiny", 1), b = make_pipeline(name, "tiny", 2);
    const auto path = temp_path(name + ".safetensors");
    save_weights(a->model(), path);
    ASSERT_NO_THROW(load_weights(b->model(), path)) << name;
    auto pa = params_of(a->model()), pb = params_of(b->model());
    ASSERT_FALSE(pa.empty());
    for (auto& [key, t] : pa) EXPECT_TRUE(at::equal(t, pb.at(key))) << name << ": " << key;
    std::remove(path.c_str());
  }
}

TEST(Weights, QwenImageNamesAreNotTakenForFluxOriginals) {
  QwenImageTransformer m(QwenImageConfig::preset("tiny"));
  auto p = params_of(*m);
  ASSERT_TRUE(p.count("img_in.weight"));
  ASSERT_TRUE(p.count("txt_in.weight"));
  EXPECT_FALSE(is_flux_original_layout(p));
}

TEST(Weights, FluxOriginalLayoutIntoAnotherModelIsRefusedSayingSo) {
  auto wan = make_pipeline("wan", "tiny", 1);
  std::map<std::string, at::Tensor> bfl = {
      {"double_blocks.0.img_attn.qkv.weight", at::zeros({3, 1})},
      {"img_in.weight", at::zeros({1, 1})}};
  auto msg = error_of([&] { load_weights(wan->model(), bfl, "bfl.safetensors"); });
  EXPECT_NE(msg.find("Flux's original layout"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--model flux"), std::string::npos) << msg;
}

TEST(Safetensors, DuplicateKeysAndOverlappingRangesAreRefused) {
  const std::string sixteen(16, 'x');
  auto dup = file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                              sixteen);
  auto msg = error_of([&] { parse_safetensors(dup, "f.safetensors"); });
  EXPECT_NE(msg.find("names tensor 'a' twice"), std::string::npos) << msg;
  auto overlap = file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                  sixteen);
  msg = error_of([&] { parse_safetensors(overlap, "f.safetensors"); });
  EXPECT_NE(msg.find("tensors 'a' [0, 8) and 'b' [4, 12) overlap"), std::string::npos) << msg;
  // Adjacent ranges and empty tensors share no byte: accepted.
  auto fine = file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                               R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                               sixteen);
  EXPECT_EQ(parse_safetensors(fine, "f.safetensors").size(), 3u);
}

TEST(Safetensors, OnlyRegularFilesAreRead) {
  // A FIFO with no writer: opening it for reading would block forever.
  const auto fifo = temp_path("weights.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto msg = error_of([&] { read_safetensors(fifo); });
  EXPECT_NE(msg.find("is a FIFO; give a regular .safetensors file"), std::string::npos) << msg;
  std::remove(fifo.c_str());
  msg = error_of([&] { read_safetensors("/dev/zero"); });  // would never end
  EXPECT_NE(msg.find("'/dev/zero' is a character device"), std::string::npos) << msg;
  msg = error_of([&] { read_safetensors("/tmp"); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  msg = error_of([&] { read_safetensors(temp_path("missing.safetensors")); });
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
}

TEST(Models, IntegerOrBoolInputsAreRefusedByName) {
  auto flux = make_pipeline("flux", "tiny", 1);
  RunSize size{64, 64, 1, 4, 1};
  auto x = flux->prepare(size, 2);
  auto msg = error_of([&] { flux->velocity(x.to(at::kLong), 0.5); });
  EXPECT_NE(msg.find("FluxTransformer: argument 'hidden_states' is a Long tensor"),
            std::string::npos)
      << msg;
  QwenImageTransformer q(QwenImageConfig::preset("tiny"));
  msg = error_of([&] {
    q->call({at::zeros({1, 4, 64}), at::zeros({1, 2, 32}, at::kBool), at::full({1}, 0.5),
             at::zeros({4, 3}, at::kLong)});
  });
  EXPECT_NE(msg.find("QwenImageTransformer: argument 'encoder_hidden_states' is a Bool tensor"),
            std::string::npos)
      << msg;
  auto wan = make_pipeline("wan", "tiny", 1);
  auto v = wan->prepare(size, 2);
  msg = error_of([&] {
    wan->model().call({v.to(at::kInt)}, {{"timestep", at::full({1}, 0.5)},
                                         {"encoder_hidden_states", at::zeros({1, 4, 32})}});
  });
  EXPECT_NE(msg.find("WanTransformer: argument 'hidden_states' is a Int tensor"), std::string::npos)
      << msg;
}

TEST(Models, FramesAreRefusedForImageModels) {
  for (const char* name : {"flux", "qwen-image"}) {
    auto pipe = make_pipeline(name, "tiny", 1);
    auto msg = error_of([&] { pipe->check_size(RunSize{64, 64, 5, 4, 1}); });
    EXPECT_NE(msg.find("--frames 5 is for video models (--model wan)"), std::string::npos)
        << name << ": " << msg;
    EXPECT_EQ(error_of([&] { pipe->check_size(RunSize{64, 64, 1, 4, 1}); }), "<no error>") << name;
  }
}

// The count behind `spdit run`'s up-front weight check (a skeleton build)
// matches the initialised networks; full is counted without its memory.
TEST(Models, ParameterCountFromTheConfigMatchesTheBuiltModel) {
  for (const auto& name : model_names()) {
    for (const char* preset : {"tiny", "small"}) {
      auto pipe = make_pipeline(name, preset, 1);
      int64_t built = 0;
      for (const auto& p : pipe->model().parameters()) built += p.numel();
      EXPECT_EQ(parameter_count(name, preset), built) << name << "/" << preset;
    }
  }
  EXPECT_EQ(parameter_count("flux", "full"), 11'901'408'320);  // Flux.1-dev, as published
  EXPECT_EQ(parameter_count("wan", "full"), 1'418'996'800);    // Wan2.1-T2V-1.3B
}
