// `spdit explain`: the plan, the per-rank shape of every tensor it splits or
// gathers, the padding, and the bytes a step will move, without running the
// model; and what cannot work, before any rank starts.
#include <iomanip>
#include <iostream>
#include <optional>

#include "auto_layout.h"
#include "commands.h"
#include "model_flags.h"
#include "predict.h"
#include "spdit/checkpoints/model_checkpoint.h"
#include "spdit/models/pipeline.h"
#include "spdit/sharding/sharded_weights.h"
#include "validators.h"
#include "weight_memory.h"

namespace spdit::cli {
namespace {

struct ExplainOptions {
  std::string model = "flux", preset = "small";
  int ulysses = 1, ring = 1, cfg = 1, ranks = 0;
  double cfg_scale = 1.0, link_gbps = 5.0;
  std::string parallel = "manual";
  int64_t height = 512, width = 512, frames = 1, text_len = 64;
  std::string weights, dtype, memory_per_rank;
  bool shard_weights = false;
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

int explain(ExplainOptions o) {
  // A skeleton: the shapes without a byte of weights, at any size; with
  // --weights, the checkpoint's model at its size, read from its headers.
  std::unique_ptr<models::Pipeline> pipe;
  std::string label = o.preset;
  std::optional<checkpoints::Checkpoint> ckpt;
  std::optional<checkpoints::Identified> found;
  if (!o.weights.empty()) {
    ckpt = checkpoints::Checkpoint::open(o.weights);
    found = checkpoints::identify(*ckpt);
    pipe = models::make_pipeline(found->config, 0, models::Weights::kNone,
                                 resolve_dtype(o.dtype, &*found));
    label = found->variant + " (" + o.weights + ")";
  } else {
    pipe = models::make_pipeline(o.model, o.preset, 0, models::Weights::kNone,
                                 resolve_dtype(o.dtype, nullptr));
  }
  const auto config = found ? found->config : models::preset_config(o.model, o.preset);
  const auto keep = models::keep_in_fp32_modules(config);
  const auto dtype_of = [&](const std::string& name) {
    return models::parameter_dtype(name, pipe->dtype(), keep);
  };
  if (o.parallel != "auto" && !o.memory_per_rank.empty()) {
    throw std::invalid_argument(
        "--memory-per-rank is the budget --parallel auto weighs layouts against: add "
        "--parallel auto --ranks N, or leave --memory-per-rank out");
  }
  models::RunSize size{o.height, o.width, o.frames, o.text_len, 1};
  pipe->check_size(size);
  auto shapes = pipe->shapes(size);
  if (o.parallel == "auto") {
    if (o.ranks < 1)
      throw std::invalid_argument(
          "--parallel auto needs --ranks N: the number of ranks to lay out");
    // Explain runs on one machine for a job that may span several: "auto"
    // shares this machine's memory among all --ranks.
    const auto memory = memory_budget(o.memory_per_rank, o.ranks);
    const auto choice = choose_layout(*pipe, shapes, size, o.ranks, o.cfg_scale > 1, nullptr,
                                      o.link_gbps, memory, dtype_of);
    std::cout << "--parallel auto on " << o.ranks << " ranks:\n" << choice.table() << "\n";
    throw_if_nothing_fits(choice.candidates, choice.memory);
    o.cfg = choice.best().cfg, o.ulysses = choice.best().ulysses, o.ring = choice.best().ring;
    o.shard_weights = o.shard_weights || choice.best().shard;
  }
  if (o.cfg == 2 && !(o.cfg_scale > 1)) {
    throw std::invalid_argument(
        "--cfg 2 runs the two guidance branches at once: it needs --cfg-scale above 1");
  }
  const auto guidance = guidance_of(o.cfg_scale, o.cfg);
  auto p = predict_step(shapes, size, o.ulysses, o.ring, guidance);
  const int ranks = o.cfg * o.ulysses * o.ring;
  if (o.shard_weights && ranks > 1) {
    add_sharded_weights(p, ShardedWeights::predict_received_bytes_per_forward(pipe->model(), ranks),
                        guidance);
  }
  const int64_t ps = p.sp_size;
  std::cout << pipe->name() << "/" << label << " at " << o.height << "x" << o.width
            << (o.model == "wan" ? " x" + std::to_string(o.frames) + " frames" : std::string())
            << ": " << shapes.tokens << " tokens, text " << o.text_len << ", "
            << models::dtype_name(pipe->dtype()) << "; " << (o.cfg == 2 ? "cfg 2 x " : "") << "SP "
            << ps << " = ulysses " << o.ulysses << " x ring " << o.ring
            << (guidance == Guidance::kOff ? ""
                : guidance == Guidance::kSerial
                    ? "; guidance: two forwards per step"
                    : "; guidance: one branch per half, velocities exchanged")
            << "\n\nplan:\n"
            << describe(*get_sp_plan_from_model(pipe->model())) << "\nper-rank tensors:\n";
  for (const auto& s : shapes.sites) {
    auto local = s.full_shape;
    const int64_t len = local[s.dim] - s.text_len;
    const int64_t padded = (len + ps - 1) / ps * ps;
    local[s.dim] = s.text_len + padded / ps;
    std::cout << "  " << (s.path.empty() ? "\"\"" : s.path) << " " << s.key << ": "
              << shape_str(s.full_shape) << (s.gather ? " <- gathered from " : " -> split to ")
              << shape_str(local) << " on dim " << s.dim;
    if (s.text_len) std::cout << " (first " << s.text_len << " text rows whole)";
    if (padded != len) std::cout << " (padded " << len << " -> " << padded << ")";
    std::cout << "\n";
  }
  std::cout << "\nattention per step:\n";
  for (const auto& a : shapes.attention) {
    std::cout << "  " << a.name << " x" << a.count << ": " << a.heads << " heads of " << a.head_dim
              << (a.sharded ? "" : ", local (no communication)") << "\n";
  }
  std::cout << "\npredicted communication per rank and step:";
  if (p.bytes.empty()) std::cout << " none";
  for (const auto& [k, b] : p.bytes) std::cout << "\n  " << k << ": " << b << " bytes";
  std::cout << "\n  total: " << p.total_bytes() << " bytes\n";
  if (ranks > 1 || ckpt) {
    std::cout << "\nweights per rank: "
              << describe_weight_memory(pipe->model(), ranks, o.shard_weights && ranks > 1,
                                        dtype_of, ckpt ? &*ckpt : nullptr,
                                        found ? &*found : nullptr)
              << "\n";
  }
  for (const auto& n : p.notes) std::cout << "note: " << n << "\n";
  for (const auto& e : p.errors) std::cout << "error: " << e << "\n";
  return p.errors.empty() ? 0 : 1;
}

}  // namespace

void add_explain_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("explain",
                                 "Show what a run will split, gather and move, without running it");
  static ExplainOptions o;
  add_model_flags(cmd, o.model, o.preset, o.height, o.width, o.frames, o.text_len, o.dtype);
  cmd->add_option("--ulysses", o.ulysses, "Ulysses degree U")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--ring", o.ring, "Ring degree R")->check(whole_number(1))->capture_default_str();
  cmd->add_option("--cfg", o.cfg, "CFG degree (1 or 2)")
      ->check(CLI::IsMember({1, 2}))
      ->capture_default_str();
  cmd->add_option("--cfg-scale", o.cfg_scale, "Classifier-free guidance scale (on above 1)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--parallel", o.parallel,
                  "auto: choose cfg x ulysses x ring for --ranks, and say why")
      ->check(CLI::IsMember({"auto", "manual"}))
      ->capture_default_str();
  cmd->add_flag("--shard-weights", o.shard_weights, "Predict a run with --shard-weights");
  cmd->add_option("--ranks", o.ranks, "With --parallel auto: how many ranks")
      ->check(whole_number(1));
  cmd->add_option("--link-gbps", o.link_gbps,
                  "With --parallel auto: the link's speed per rank in GB/s")
      ->check(CLI::Range(1e-3, 1e6))
      ->capture_default_str();
  cmd->add_option("--memory-per-rank", o.memory_per_rank,
                  "With --parallel auto: the memory a rank may use, BYTES (e.g. 8e9) or auto "
                  "(this machine's available memory shared by --ranks); default: not limited");
  cmd->add_option("--weights", o.weights,
                  "Explain the model of this checkpoint (file, index or folder), at its size")
      ->check(CLI::ExistingPath);
  cmd->callback([&action] { action = [] { return explain(o); }; });
}

}  // namespace spdit::cli
