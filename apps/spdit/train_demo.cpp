// `spdit train-demo`: trains the tiny FLUX.1 demo folder (models/shapes-demo)
// from a seed, on this machine's CPU. See docs/demo_model.md.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "rank_setup.h"
#include "spdit/pipelines/train_demo.h"
#include "validators.h"

namespace spdit::cli {

void add_train_demo_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("train-demo",
                                 "Train the tiny shapes demo model (a FLUX.1 folder) from a seed");
  static pipelines::TrainDemoOptions o;
  static std::string out, json;
  static int threads = 1;
  cmd->add_option("--out", out, "The folder to write (new, or empty)")->required();
  cmd->add_option("--seed", o.seed, "Seed of the data, the initial weights and the noise")
      ->check(whole_number(0))
      ->capture_default_str();
  cmd->add_option("--steps", o.transformer_steps, "Transformer training steps")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--hidden", o.transformer_hidden,
                  "The transformer's width (a multiple of --head-dim)")
      ->check(whole_number(2))
      ->capture_default_str();
  cmd->add_option("--head-dim", o.head_dim, "The attention heads' width")
      ->check(whole_number(2))
      ->capture_default_str();
  cmd->add_option("--rope-axes", o.rope_axes,
                  "The head's RoPE channels per axis: frame,row,column (even, summing to "
                  "--head-dim)")
      ->delimiter(',')
      ->expected(3)
      ->capture_default_str();
  cmd->add_option("--vae-steps", o.vae_steps, "Autoencoder training steps")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--batch", o.transformer_batch, "Transformer batch size")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--vae-batch", o.vae_batch, "Autoencoder batch size")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--pool", o.latent_pool,
                  "Pictures encoded once for the transformer to learn from")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--threads", threads,
                  "Intra-op threads (the same seed and threads give the same weights)")
      ->check(whole_number(1))
      ->capture_default_str();
  cmd->add_option("--uncond-prob", o.uncond_prob,
                  "Share of samples trained with the empty prompt (for true CFG)")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  cmd->add_option("--run-true-cfg-scale", o.run_true_cfg_scale,
                  "The true CFG scale `spdit run` uses on the folder by default (1: none)")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--snapshot-every", o.snapshot_every,
                  "Write a runnable folder every N transformer steps (to --snapshot-dir)")
      ->check(whole_number(1));
  cmd->add_option("--snapshot-dir", o.snapshot_dir, "Where snapshots go: DIR/step-N");
  cmd->add_option("--json", json, "Write the loss curves and times here");
  cmd->callback([&action] {
    action = [] {
      set_threads_per_rank(threads);
      o.log = [](const std::string& line) { std::cout << line << std::endl; };
      const auto r = pipelines::train_demo_model(out, o);
      std::cout << "wrote " << out << " (seed " << o.seed << "): autoencoder " << r.vae_seconds
                << " s, transformer " << r.transformer_seconds << " s; latent shift "
                << r.latent_shift << ", scale " << r.latent_scale << std::endl;
      if (!json.empty()) {
        std::ofstream f(json);
        f << nlohmann::json({{"seed", o.seed},
                             {"threads", threads},
                             {"vae_loss", r.vae_loss},
                             {"transformer_loss", r.transformer_loss},
                             {"vae_seconds", r.vae_seconds},
                             {"transformer_seconds", r.transformer_seconds}})
                 .dump(1)
          << "\n";
        if (!f.flush()) throw std::runtime_error("cannot write --json '" + json + "'");
      }
      return 0;
    };
  });
}

}  // namespace spdit::cli
