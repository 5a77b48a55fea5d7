// libFuzzer target: plans decoded from bytes (paths, keys, spec kinds, dims,
// flags) go through validate_sp_plan and path resolution against a model;
// every outcome must be acceptance or an exception.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "spdit/hooks/sequence_parallel.h"
#include "support/toy_models.h"

namespace {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() { return n ? (--n, *p++) : 0; }
  int64_t small_int() { return static_cast<int64_t>(byte() % 9) - 3; }
  std::string word() {
    static const char* words[] = {
        "",        "blocks",        "0",         "1",   "*",    "proj_out", "pos_embed",
        "x_embed", "hidden_states", "positions", "fc1", "norm", "input",    "..",
        "a*"};
    std::string s;
    const int parts = byte() % 4;
    for (int i = 0; i < parts; ++i) s += (i ? "." : "") + std::string(words[byte() % 15]);
    return s;
  }
};

spdit::AnySpec spec(Reader& r) {
  std::optional<int64_t> dims;
  if (r.byte() & 1) dims = r.small_int();
  switch (r.byte() % 3) {
    case 0:
      return spdit::SequenceParallelInput(r.small_int(), dims)
          .with_split_output(r.byte() & 1)
          .with_auto_pad(r.byte() & 1);
    case 1: {
      spdit::SequenceParallelPartialInput p;
      p.split_dim = r.small_int();
      p.expected_dims = dims;
      p.split_output = r.byte() & 1;
      if (r.byte() & 1)
        p.text_len_source = r.word();
      else
        p.text_len_source = r.small_int();
      return p;
    }
    default:
      return spdit::SequenceParallelOutput{r.small_int(), dims};
  }
}

spdit::SpecList specs(Reader& r) {
  if (r.byte() % 4) {
    spdit::SpecList one;
    one.items = {spec(r)};
    return one;
  }
  std::vector<spdit::AnySpec> list;
  const int n = r.byte() % 3;
  for (int i = 0; i < n; ++i) list.push_back(spec(r));
  return spdit::SpecList(list);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto model = spdit::test::make_example_model();
  Reader r{data, size};
  spdit::SequenceParallelModelPlan plan;
  const int entries = r.byte() % 5;
  for (int e = 0; e < entries; ++e) {
    std::string path = r.word();
    if (r.byte() & 1) {
      spdit::SequenceParallelInputType in;
      const int keys = r.byte() % 3;
      for (int k = 0; k < keys; ++k) {
        spdit::InputKey key =
            (r.byte() & 1) ? spdit::InputKey(r.word()) : spdit::InputKey(r.small_int());
        in.emplace_back(key, specs(r));
      }
      plan.emplace_back(path, spdit::inputs(in));
    } else {
      plan.emplace_back(path, spdit::outputs(specs(r)));
    }
  }
  try {
    spdit::validate_sp_plan(plan);
    for (const auto& [path, entry] : plan) spdit::resolve_plan_path(*model, path);
  } catch (const std::exception&) {
  }
  (void)spdit::describe(plan);
  return 0;
}
