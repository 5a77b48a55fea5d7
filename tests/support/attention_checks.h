#pragma once
// Parity of sequence-parallel attention with a naive single-device reference
// (double precision, the full S x S matrix), through a real plan: the root
// splits q, k, v (auto_pad) and the key mask, attention runs inside the SP
// region, the image output is gathered on dim 1; replicated text is passed
// beside it.
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <sstream>

#include "spdit/attention/attention.h"
#include "spdit/hooks/hookable.h"
#include "spdit/hooks/sequence_parallel.h"

namespace spdit::test {

struct AttnCase {
  int64_t seq = 16, heads = 4, text = 0, batch = 1, head_dim = 8;
  bool front = true;
  bool user_mask = false;
  std::string str() const {
    std::ostringstream os;
    os << "S=" << seq << " H=" << heads << " T=" << text << (front ? " front" : " rear")
       << (user_mask ? " +mask" : "");
    return os.str();
  }
};

struct AttnInputs {
  at::Tensor q, k, v, tq, tk, tv, mask;
  explicit AttnInputs(const AttnCase& c) {
    auto gen = at::detail::createCPUGenerator(c.seq * 1000 + c.heads * 10 + c.text);
    auto r = [&](int64_t s) { return at::randn({c.batch, s, c.heads, c.head_dim}, gen); };
    q = r(c.seq), k = r(c.seq), v = r(c.seq);
    if (c.text) tq = r(c.text), tk = r(c.text), tv = r(c.text);
    // Every third key masked out (the first always valid).
    if (c.user_mask)
      mask = (at::arange(c.seq) % 3 != 1).unsqueeze(0).expand({c.batch, c.seq}).contiguous();
  }
};

/// softmax(q k^T / sqrt(D)) v over [text, image] (or [image, text]), in double.
inline at::Tensor reference_attention(const AttnCase& c, const AttnInputs& in) {
  auto cat = [&](const at::Tensor& t, const at::Tensor& i) {
    if (!t.defined()) return i;
    return c.front ? at::cat({t, i}, 1) : at::cat({i, t}, 1);
  };
  auto q = cat(in.tq, in.q).to(at::kDouble).permute({0, 2, 1, 3});
  auto k = cat(in.tk, in.k).to(at::kDouble).permute({0, 2, 1, 3});
  auto v = cat(in.tv, in.v).to(at::kDouble).permute({0, 2, 1, 3});
  auto s = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(c.head_dim));
  if (in.mask.defined()) {
    auto m = in.mask;
    if (c.text) m = cat(at::ones({c.batch, c.text}, at::kBool), m);
    s = s.masked_fill(m.logical_not().view({c.batch, 1, 1, -1}), -INFINITY);
  }
  return at::matmul(at::softmax(s, -1), v).permute({0, 2, 1, 3}).to(at::kFloat);
}

/// q, k, v and the key mask split on dim 1; text replicated; image gathered.
struct AttnModelImpl : HookableModule, DeclaresSpPlan {
  Hooked<torch::nn::Identity> img_out;
  AttentionOptions options;
  explicit AttnModelImpl(AttentionOptions o)
      : img_out(register_module("img_out", torch::nn::Identity())), options(o) {}
  std::vector<std::string> signature() const override {
    return {"q", "k", "v", "mask", "tq", "tk", "tv"};
  }
  SequenceParallelModelPlan sp_plan() const override {
    auto seq = SequenceParallelInput(1, 4).with_auto_pad();
    auto mask = SequenceParallelInput(1, 2).with_auto_pad();
    return {{"", inputs({{"q", seq}, {"k", seq}, {"v", seq}, {"mask", mask}})},
            {"img_out", outputs(SequenceParallelOutput{1, 4})}};
  }

 protected:
  Outputs forward(const BoundArgs& a) override {
    AttentionMasks masks;
    masks.key_padding_mask = a.optional_tensor("mask");
    at::Tensor out;
    at::Tensor text;
    if (a.has("tq")) {
      JointText jt{a.tensor("tq"), a.tensor("tk"), a.tensor("tv")};
      auto joint = attention(a.tensor("q"), a.tensor("k"), a.tensor("v"), options, &jt, masks);
      const int64_t t = jt.q.size(1), s = joint.size(1) - t;
      const bool front = options.joint_strategy() == JointStrategy::kFront;
      text = front ? joint.narrow(1, 0, t) : joint.narrow(1, s, t);
      out = front ? joint.narrow(1, t, s) : joint.narrow(1, 0, s);
    } else {
      out = attention(a.tensor("q"), a.tensor("k"), a.tensor("v"), options, nullptr, masks);
    }
    return Outputs({Value(img_out(out.contiguous())), Value(text)});
  }
};
TORCH_MODULE(AttnModel);

/// Runs one case on this rank under `cfg` and compares with the reference.
inline void check_attention_case(const SequenceParallelConfig& cfg, const AttnCase& c,
                                 double tol = 1e-5) {
  AttnInputs in(c);
  auto expected = reference_attention(c, in);
  AttnModel model(
      AttentionOptions().joint_strategy(c.front ? JointStrategy::kFront : JointStrategy::kRear));
  apply_sequence_parallel(*model, cfg);
  auto out = model->call({in.q, in.k, in.v, in.mask, in.tq, in.tk, in.tv});
  remove_sequence_parallel(*model);
  at::Tensor got = out[0].tensor();
  if (c.text) {
    got = c.front ? at::cat({out[1].tensor(), got}, 1) : at::cat({got, out[1].tensor()}, 1);
  }
  ASSERT_EQ(got.sizes(), expected.sizes()) << c.str();
  const double err = (got - expected).abs().max().item<double>();
  EXPECT_LE(err, tol) << "U=" << cfg.get_ulysses_world_size() << " R=" << cfg.get_ring_world_size()
                      << " " << c.str();
}

/// The acceptance grid for `p` ranks: lengths that divide by p and not, heads
/// that divide by U and not, no text / text front / rear with text lengths
/// that are and are not multiples of p, with and without a key mask.
inline std::vector<AttnCase> attention_grid(int p) {
  std::vector<AttnCase> cases;
  for (int64_t seq : {int64_t{4} * p, int64_t{4} * p + 3}) {
    for (int64_t heads : {int64_t{8}, int64_t{5}}) {
      for (int64_t text : {int64_t{0}, int64_t{2} * p, int64_t{2} * p + 1}) {
        for (bool front : {true, false}) {
          if (text == 0 && !front) continue;
          AttnCase c;
          c.seq = seq, c.heads = heads, c.text = text, c.front = front;
          // 16 is a multiple of every register-tiled kernel's vector width,
          // 8 only of AVX2's: both CPU kernel paths are checked for parity.
          c.head_dim = heads == 8 ? 16 : 8;
          c.user_mask = (seq + heads + text) % 2 == 1;
          cases.push_back(c);
        }
      }
    }
  }
  return cases;
}

}  // namespace spdit::test
