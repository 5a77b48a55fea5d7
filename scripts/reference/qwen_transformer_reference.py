#!/usr/bin/env python3
"""Generates tests/fixtures/qwen_tiny/ and qwen_tiny_io.safetensors: a tiny
Qwen-Image transformer with seeded weights in diffusers' names, and its output
for fixed inputs as diffusers' QwenImageTransformer2DModel computes it.

Transcribed with the same torch operations from github:huggingface/diffusers
(the stored snapshot's HEAD): models/transformers/transformer_qwenimage.py
(QwenTimestepProjEmbeddings: Timesteps(256, flip_sin_to_cos=True,
downscale_freq_shift=0, scale=1000) + TimestepEmbedding; txt_norm RMSNorm
eps 1e-6; img_in / txt_in; QwenEmbedRope(scale_rope=True) with img_shapes;
QwenImageTransformerBlock: img_mod / txt_mod = SiLU + Linear(6 dim), chunked
(shift, scale, gate) x 2, LayerNorm without affine eps 1e-6,
QwenDoubleStreamAttnProcessor2_0 (to_q/k/v and add_q/k/v_proj, RMS qk norms
per head, complex RoPE on interleaved pairs, joint attention over [text,
image], to_out.0 / to_add_out), FeedForward gelu-approximate; norm_out
AdaLayerNormContinuous (scale, shift); proj_out). torch 1.13 has no
scaled_dot_product_attention: plain softmax(QK^T / sqrt(d)) V in float64.

Model: hidden 32 (2 heads of 16), 2 blocks, joint_attention_dim 32,
axes_dims_rope [4, 6, 6], in_channels 64. Weights from torch.Generator seeded
20251126 over the names in sorted order: matrices N(0, 1/fan_in), norm weights
1 + N(0, 0.1^2), biases N(0, 0.1^2), rounded to bf16 and stored so. Inputs: a 3 x 5 token image (odd sizes: the
RoPE centring), 6 text tokens, timestep 0.7 (diffusers' t / 1000).

Usage: /usr/bin/python3 scripts/reference/qwen_transformer_reference.py --out tests/fixtures
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen_pipeline_reference import qwen_embed_rope  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402

DIM, HEADS, HEAD_DIM, LAYERS, TEXT_DIM, IN_CH = 32, 2, 16, 2, 32, 64
AXES = [4, 6, 6]
SEED = 20251126


def shapes():
    s = {"img_in.weight": (DIM, IN_CH), "img_in.bias": (DIM,), "txt_in.weight": (DIM, TEXT_DIM),
         "txt_in.bias": (DIM,), "txt_norm.weight": (TEXT_DIM,),
         "time_text_embed.timestep_embedder.linear_1.weight": (DIM, 256),
         "time_text_embed.timestep_embedder.linear_1.bias": (DIM,),
         "time_text_embed.timestep_embedder.linear_2.weight": (DIM, DIM),
         "time_text_embed.timestep_embedder.linear_2.bias": (DIM,),
         "norm_out.linear.weight": (2 * DIM, DIM), "norm_out.linear.bias": (2 * DIM,),
         "proj_out.weight": (IN_CH, DIM), "proj_out.bias": (IN_CH,)}
    for i in range(LAYERS):
        b = f"transformer_blocks.{i}."
        for m in ("img_mod.1", "txt_mod.1"):
            s[b + m + ".weight"], s[b + m + ".bias"] = (6 * DIM, DIM), (6 * DIM,)
        for p in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"):
            s[b + "attn." + p + ".weight"], s[b + "attn." + p + ".bias"] = (DIM, DIM), (DIM,)
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            s[b + "attn." + n + ".weight"] = (HEAD_DIM,)
        for m in ("img_mlp", "txt_mlp"):
            s[b + m + ".net.0.proj.weight"], s[b + m + ".net.0.proj.bias"] = (4 * DIM, DIM), (4 * DIM,)
            s[b + m + ".net.2.weight"], s[b + m + ".net.2.bias"] = (DIM, 4 * DIM), (DIM,)
    return s


def init_weights():
    g = torch.Generator().manual_seed(SEED)
    w = {}
    for name, shape in sorted(shapes().items()):
        if "norm" in name and name.endswith("weight") and len(shape) == 1:
            w[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bias"):
            w[name] = 0.1 * torch.randn(shape, generator=g)
        else:
            w[name] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
    # Stored in bf16 (as Qwen-Image ships), computed in fp32 from the rounded values.
    return {k: v.bfloat16().float() for k, v in w.items()}


def linear(w, name, x):
    return F.linear(x, w[name + ".weight"], w[name + ".bias"])


def rms_norm(x, weight, eps=1e-6):  # diffusers' RMSNorm
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return (x * torch.rsqrt(variance + eps)) * weight


def timestep_embedding(t, dim=256, scale=1000, max_period=10000):  # get_timestep_embedding
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1)  # flip_sin_to_cos


def apply_rotary_emb_qwen(x, freqs_cis):  # use_real=False
    x_rotated = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(x_rotated * freqs_cis.unsqueeze(1)).flatten(3).type_as(x)


def attention(q, k, v):  # (B, S, H, D), float64 softmax
    q, k, v = (t.transpose(1, 2).double() for t in (q, k, v))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return (a @ v).transpose(1, 2).float()


def modulate(x, mod):
    shift, scale, gate = mod.chunk(3, dim=-1)
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1), gate.unsqueeze(1)


def feed_forward(w, name, x):
    return linear(w, name + ".net.2", F.gelu(linear(w, name + ".net.0.proj", x), approximate="tanh"))


def block(w, i, img, txt, temb, img_freqs, txt_freqs):
    b = f"transformer_blocks.{i}."
    img_mod1, img_mod2 = linear(w, b + "img_mod.1", F.silu(temb)).chunk(2, dim=-1)
    txt_mod1, txt_mod2 = linear(w, b + "txt_mod.1", F.silu(temb)).chunk(2, dim=-1)
    ln = lambda x: F.layer_norm(x, (DIM,), eps=1e-6)  # noqa: E731
    img_m, img_g1 = modulate(ln(img), img_mod1)
    txt_m, txt_g1 = modulate(ln(txt), txt_mod1)
    heads = lambda x: x.unflatten(-1, (HEADS, -1))  # noqa: E731
    a = b + "attn."
    iq, ik, iv = (heads(linear(w, a + p, img_m)) for p in ("to_q", "to_k", "to_v"))
    tq, tk, tv = (heads(linear(w, a + p, txt_m)) for p in ("add_q_proj", "add_k_proj", "add_v_proj"))
    iq, ik = rms_norm(iq, w[a + "norm_q.weight"]), rms_norm(ik, w[a + "norm_k.weight"])
    tq, tk = rms_norm(tq, w[a + "norm_added_q.weight"]), rms_norm(tk, w[a + "norm_added_k.weight"])
    iq, ik = apply_rotary_emb_qwen(iq, img_freqs), apply_rotary_emb_qwen(ik, img_freqs)
    tq, tk = apply_rotary_emb_qwen(tq, txt_freqs), apply_rotary_emb_qwen(tk, txt_freqs)
    joint = attention(torch.cat([tq, iq], 1), torch.cat([tk, ik], 1), torch.cat([tv, iv], 1)).flatten(2, 3)
    seq_txt = txt.shape[1]
    img_attn = linear(w, a + "to_out.0", joint[:, seq_txt:])
    txt_attn = linear(w, a + "to_add_out", joint[:, :seq_txt])
    img = img + img_g1 * img_attn
    txt = txt + txt_g1 * txt_attn
    img_m2, img_g2 = modulate(ln(img), img_mod2)
    img = img + img_g2 * feed_forward(w, b + "img_mlp", img_m2)
    txt_m2, txt_g2 = modulate(ln(txt), txt_mod2)
    txt = txt + txt_g2 * feed_forward(w, b + "txt_mlp", txt_m2)
    return img, txt


def forward(w, hidden_states, encoder_hidden_states, timestep, img_shapes):
    img = linear(w, "img_in", hidden_states)
    txt = linear(w, "txt_in", rms_norm(encoder_hidden_states, w["txt_norm.weight"]))
    t = timestep_embedding(timestep)
    temb = linear(w, "time_text_embed.timestep_embedder.linear_2",
                  F.silu(linear(w, "time_text_embed.timestep_embedder.linear_1", t)))
    img_freqs, txt_freqs = qwen_embed_rope(img_shapes, [txt.shape[1]], axes_dim=AXES)
    for i in range(LAYERS):
        img, txt = block(w, i, img, txt, temb, img_freqs, txt_freqs)
    scale, shift = linear(w, "norm_out.linear", F.silu(temb)).chunk(2, dim=1)
    img = F.layer_norm(img, (DIM,), eps=1e-6) * (1 + scale)[:, None, :] + shift[:, None, :]
    return linear(w, "proj_out", img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    torch.set_num_threads(1)
    w = init_weights()
    d = os.path.join(out, "qwen_tiny")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                      {k: v.bfloat16() for k, v in w.items()})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"_class_name": "QwenImageTransformer2DModel", "attention_head_dim": HEAD_DIM,
                   "axes_dims_rope": AXES, "guidance_embeds": False, "in_channels": IN_CH,
                   "joint_attention_dim": TEXT_DIM, "num_attention_heads": HEADS, "num_layers": LAYERS,
                   "out_channels": IN_CH // 4, "patch_size": 2}, f, indent=2)
    g = torch.Generator().manual_seed(7)
    hidden = torch.randn(1, 15, IN_CH, generator=g)
    text = torch.randn(1, 6, TEXT_DIM, generator=g)
    timestep = torch.tensor([0.7])
    with torch.no_grad():
        output = forward(w, hidden, text, timestep, [(1, 3, 5)])
    print(f"output {tuple(output.shape)}, max |out| {output.abs().max():.3f}")
    write_safetensors(os.path.join(out, "qwen_tiny_io.safetensors"),
                      {"hidden_states": hidden, "encoder_hidden_states": text, "timestep": timestep,
                       "output": output}, {"source": "scripts/reference/qwen_transformer_reference.py"})


if __name__ == "__main__":
    main()
