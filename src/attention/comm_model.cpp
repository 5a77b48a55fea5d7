#include "spdit/attention/comm_model.h"

namespace spdit {

std::map<std::string, int64_t> attention_comm_bytes(const AttentionCommShape& s, int64_t u,
                                                    int64_t r) {
  const int64_t p = u * r;
  const int64_t padded = (s.tokens + p - 1) / p * p;
  const int64_t shard = padded / p;
  const int64_t hp = (s.heads + u - 1) / u * u;
  const bool masked = padded != s.tokens || s.caller_mask;
  const int64_t bm = s.caller_mask ? s.batch : 1;
  const int64_t b = s.elem_bytes, d = s.head_dim;
  std::map<std::string, int64_t> out;
  if (p == 1) return out;
  if (u > 1) out["all_to_all"] = 4 * s.batch * shard * hp * d * b * (u - 1) / u;
  if (r > 1) {
    out["ring_exchange"] =
        (r - 1) * (2 * s.batch * shard * hp * d * b + (masked ? bm * shard * u : 0));
  }
  int64_t gather = 0;
  if (masked && u > 1) gather += bm * shard * (u - 1);
  if (s.text_len > 0 && u > 1) gather += s.batch * s.text_len * (hp / u) * d * b * (u - 1);
  if (gather) out["all_gather"] = gather;
  return out;
}

}  // namespace spdit
