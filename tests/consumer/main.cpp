// Links the installed spdit and runs a 2-rank all-to-all in-process; uses the
// models, the communication model and a skeleton through the one umbrella
// header, as a user's project would.
#include <spdit/spdit.h>

#include <iostream>

int main() {
  int64_t total = 0;
  spdit::run_in_process(2, [&](spdit::World& w) {
    spdit::SequenceParallelConfig cfg{2, 1};
    cfg.setup(w);
    auto x = at::ones({1, 4, 2, 8});
    auto y = spdit::all_to_all(cfg.state().ulysses_group(), x, 2, 1);
    if (w.rank() == 0) total = y.size(1);
  });
  // A real-size Flux.1-dev built without its weights' memory, and what one
  // of its joint attentions moves on 2 Ulysses ranks at 1024x1024.
  spdit::models::SkeletonScope skeleton;
  spdit::models::FluxTransformer flux(spdit::models::FluxConfig::preset("full"));
  int64_t params = 0;
  for (const auto& p : flux->parameters()) params += p.numel();
  auto bytes = spdit::attention_comm_bytes({1, 4096, 512, 24, 128, 2, false}, 2, 1);
  std::cout << "consumer: gathered sequence length " << total << ", Flux.1-dev " << params
            << " parameters, " << bytes["all_to_all"] << " all-to-all bytes per attention"
            << std::endl;
  return total == 8 && params == 11901408320 ? 0 : 1;
}
