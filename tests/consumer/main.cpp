// Links the installed spdit and runs a 2-rank all-to-all in-process.
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
  std::cout << "consumer: gathered sequence length " << total << std::endl;
  return total == 8 ? 0 : 1;
}
