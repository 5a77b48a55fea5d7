#include "spdit/models/dit_attention.h"

#include <torch/nn/modules/dropout.h>

namespace spdit::models {

DitAttentionImpl::DitAttentionImpl(const DitAttentionOptions& o) : o_(o) {
  const int64_t inner = o.heads * o.head_dim;
  const int64_t norm_dim = o.qk_norm_full_dim ? inner : o.head_dim;
  to_q_ = register_module("to_q", Linear(o.dim, inner));
  to_k_ = register_module("to_k", Linear(o.dim, inner));
  to_v_ = register_module("to_v", Linear(o.dim, inner));
  norm_q_ = register_module("norm_q", RMSNorm(norm_dim));
  norm_k_ = register_module("norm_k", RMSNorm(norm_dim));
  if (o.context_projections) {
    add_q_ = register_module("add_q_proj", Linear(o.dim, inner));
    add_k_ = register_module("add_k_proj", Linear(o.dim, inner));
    add_v_ = register_module("add_v_proj", Linear(o.dim, inner));
    norm_added_q_ = register_module("norm_added_q", RMSNorm(o.head_dim));
    norm_added_k_ = register_module("norm_added_k", RMSNorm(o.head_dim));
  }
  if (o.to_out) {
    to_out_ = register_module("to_out", torch::nn::ModuleList());
    out_ = Linear(inner, o.dim);
    to_out_->push_back(out_);
    to_out_->push_back(torch::nn::Dropout(0.0));
  }
  if (o.to_add_out) add_out_ = register_module("to_add_out", Linear(inner, o.dim));
}

at::Tensor DitAttentionImpl::heads_of(const at::Tensor& x) const {
  return x.view({x.size(0), x.size(1), o_.heads, o_.head_dim});
}

at::Tensor DitAttentionImpl::norm(RMSNorm& n, const at::Tensor& projected) const {
  if (o_.qk_norm_full_dim) return heads_of(n->forward(projected));
  return n->forward(heads_of(projected));
}

std::pair<at::Tensor, at::Tensor> DitAttentionImpl::forward(const at::Tensor& image,
                                                            const at::Tensor& text,
                                                            const Rope& image_rope,
                                                            const Rope& text_rope) {
  auto q = norm(norm_q_, to_q_->forward(image));
  auto k = norm(norm_k_, to_k_->forward(image));
  auto v = heads_of(to_v_->forward(image));
  if (image_rope.defined()) {
    q = apply_rope(q, image_rope.cos, image_rope.sin);
    k = apply_rope(k, image_rope.cos, image_rope.sin);
  }
  if (!text.defined()) {
    auto out = attention(q, k, v).flatten(2);
    return {o_.to_out ? out_->forward(out) : out, at::Tensor()};
  }
  at::Tensor tq, tk, tv;
  if (o_.context_projections) {
    tq = heads_of(add_q_->forward(text));
    tk = heads_of(add_k_->forward(text));
    tv = heads_of(add_v_->forward(text));
    tq = norm_added_q_->forward(tq);
    tk = norm_added_k_->forward(tk);
  } else {
    tq = norm(norm_q_, to_q_->forward(text));
    tk = norm(norm_k_, to_k_->forward(text));
    tv = heads_of(to_v_->forward(text));
  }
  if (text_rope.defined()) {
    tq = apply_rope(tq, text_rope.cos, text_rope.sin);
    tk = apply_rope(tk, text_rope.cos, text_rope.sin);
  }
  JointText jt{tq, tk, tv};
  auto joint = attention(q, k, v, AttentionOptions().joint_strategy(JointStrategy::kFront), &jt);
  const int64_t t = text.size(1);
  auto text_out = joint.narrow(1, 0, t).flatten(2);
  auto image_out = joint.narrow(1, t, joint.size(1) - t).flatten(2);
  if (o_.to_out) image_out = out_->forward(image_out);
  if (o_.to_add_out) text_out = add_out_->forward(text_out);
  return {image_out, text_out};
}

at::Tensor DitAttentionImpl::cross(const at::Tensor& x, const at::Tensor& context) {
  auto q = norm(norm_q_, to_q_->forward(x));
  auto k = norm(norm_k_, to_k_->forward(context));
  auto v = heads_of(to_v_->forward(context));
  auto out = attention(q, k, v, AttentionOptions().skip_sp(true)).flatten(2);
  return o_.to_out ? out_->forward(out) : out;
}

}  // namespace spdit::models
