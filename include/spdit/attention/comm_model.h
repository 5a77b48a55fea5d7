#pragma once
// Bytes one attention call moves on one rank, by counter kind: the formulas
// of docs/attention.md, used by `spdit explain` to predict a run.
#include <cstdint>
#include <map>
#include <string>

namespace spdit {

struct AttentionCommShape {
  int64_t batch = 1;
  int64_t tokens = 0;    // N, before padding
  int64_t text_len = 0;  // T (joint text), 0 for none
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t elem_bytes = 4;
  bool caller_mask = false;  // a key_padding_mask passed by the caller
};

/// Bytes sent (= received) per kind for U x R.
std::map<std::string, int64_t> attention_comm_bytes(const AttentionCommShape& s, int64_t ulysses,
                                                    int64_t ring);

}  // namespace spdit
