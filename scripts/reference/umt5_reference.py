#!/usr/bin/env python3
"""Generates the umT5 encoder fixtures of the Wan pipeline (tests/fixtures/wan_text/).

The reference is Wan's own encoder, wan/modules/t5.py of github:Wan-Video/Wan2.1
(T5Encoder with shared_pos=False: every block has its own relative position
embedding, as umt5-xxl is built by `umt5_xxl(encoder_only=True)`), transcribed
below class by class with the dropout left out (inference). The prompt side is
diffusers' WanPipeline._get_t5_prompt_embeds: ids + </s>, padded to
max_length, mask = non-pad, the encoder's last hidden state trimmed to the
prompt's token count and zero-padded back to max_length.

Writes (random weights, torch.Generator seeded 20251126):
  umt5_encoder/config.json, model.safetensors   transformers' UMT5EncoderModel names
                                                 (the diffusers folder's text_encoder/)
  umt5_wan.pth                                  the same weights in Wan's names, saved
                                                 with torch.save (a zip checkpoint, as
                                                 models_t5_umt5-xxl-enc-bf16.pth)
  umt5_io.safetensors                           input_ids, attention_mask,
                                                 last_hidden_state, prompt_embeds
The tokenizer is tests/fixtures/text/t5_tokenizer/spiece.model (pad 0, eos 1).

Usage: /usr/bin/python3 scripts/reference/umt5_reference.py --out tests/fixtures/wan_text
"""
import argparse
import json
import math
import os
import sys

import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402

SEED = 20251126


# ------------------------------------------------ wan/modules/t5.py, as written there
class GELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5LayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in [torch.float16, torch.bfloat16]:
            x = x.type_as(self.weight)
        return self.weight * x


class T5Attention(nn.Module):
    def __init__(self, dim, dim_attn, num_heads):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x, mask=None, pos_bias=None):
        b, n, c = x.size(0), self.num_heads, self.head_dim
        q = self.q(x).view(b, -1, n, c)
        k = self.k(x).view(b, -1, n, c)
        v = self.v(x).view(b, -1, n, c)
        attn_bias = x.new_zeros(b, n, q.size(1), k.size(1))
        if pos_bias is not None:
            attn_bias += pos_bias
        if mask is not None:
            mask = mask.view(b, 1, 1, -1)
            attn_bias.masked_fill_(mask == 0, torch.finfo(x.dtype).min)
        attn = torch.einsum('binc,bjnc->bnij', q, k) + attn_bias
        attn = F.softmax(attn.float(), dim=-1).type_as(attn)
        x = torch.einsum('bnij,bjnc->binc', attn, v)
        return self.o(x.reshape(b, -1, n * c))


class T5FeedForward(nn.Module):
    def __init__(self, dim, dim_ffn):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), GELU())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets, num_heads, bidirectional, max_dist=128):
        super().__init__()
        self.num_buckets, self.num_heads = num_buckets, num_heads
        self.bidirectional, self.max_dist = bidirectional, max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, lq, lk):
        rel_pos = torch.arange(lk).unsqueeze(0) - torch.arange(lq).unsqueeze(1)
        rel_pos = self._relative_position_bucket(rel_pos)
        return self.embedding(rel_pos).permute(2, 0, 1).unsqueeze(0).contiguous()

    def _relative_position_bucket(self, rel_pos):
        num_buckets = self.num_buckets // 2
        rel_buckets = (rel_pos > 0).long() * num_buckets
        rel_pos = torch.abs(rel_pos)
        max_exact = num_buckets // 2
        rel_pos_large = max_exact + (torch.log(rel_pos.float() / max_exact) /
                                     math.log(self.max_dist / max_exact) * (num_buckets - max_exact)).long()
        rel_pos_large = torch.min(rel_pos_large, torch.full_like(rel_pos_large, num_buckets - 1))
        rel_buckets += torch.where(rel_pos < max_exact, rel_pos, rel_pos_large)
        return rel_buckets


class T5SelfAttention(nn.Module):  # shared_pos=False: umT5
    def __init__(self, dim, dim_attn, dim_ffn, num_heads, num_buckets):
        super().__init__()
        self.norm1 = T5LayerNorm(dim)
        self.attn = T5Attention(dim, dim_attn, num_heads)
        self.norm2 = T5LayerNorm(dim)
        self.ffn = T5FeedForward(dim, dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(num_buckets, num_heads, bidirectional=True)

    def forward(self, x, mask=None):
        e = self.pos_embedding(x.size(1), x.size(1))
        x = x + self.attn(self.norm1(x), mask=mask, pos_bias=e)
        return x + self.ffn(self.norm2(x))


class T5Encoder(nn.Module):
    def __init__(self, vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([T5SelfAttention(dim, dim_attn, dim_ffn, num_heads, num_buckets)
                                     for _ in range(num_layers)])
        self.norm = T5LayerNorm(dim)

    def forward(self, ids, mask=None):
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


# ------------------------------------------------ names: Wan's -> transformers' UMT5
def transformers_name(wan):
    parts = wan.split(".")
    if wan == "token_embedding.weight":
        return "shared.weight"
    if wan == "norm.weight":
        return "encoder.final_layer_norm.weight"
    i, rest = parts[1], ".".join(parts[2:])
    p = f"encoder.block.{i}.layer."
    return {"norm1.weight": p + "0.layer_norm.weight",
            "attn.q.weight": p + "0.SelfAttention.q.weight",
            "attn.k.weight": p + "0.SelfAttention.k.weight",
            "attn.v.weight": p + "0.SelfAttention.v.weight",
            "attn.o.weight": p + "0.SelfAttention.o.weight",
            "pos_embedding.embedding.weight": p + "0.SelfAttention.relative_attention_bias.weight",
            "norm2.weight": p + "1.layer_norm.weight",
            "ffn.gate.0.weight": p + "1.DenseReluDense.wi_0.weight",
            "ffn.fc1.weight": p + "1.DenseReluDense.wi_1.weight",
            "ffn.fc2.weight": p + "1.DenseReluDense.wo.weight"}[rest]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    here = os.path.dirname(os.path.abspath(__file__))
    spiece = os.path.join(here, "..", "..", "tests", "fixtures", "text", "t5_tokenizer", "spiece.model")
    torch.manual_seed(SEED)
    cfg = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "vocab_size": 160, "d_model": 32,
           "d_kv": 8, "d_ff": 48, "num_heads": 4, "num_layers": 2, "relative_attention_num_buckets": 32,
           "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
           "dense_act_fn": "gelu_new", "is_gated_act": True, "layer_norm_epsilon": 1e-6}
    model = T5Encoder(cfg["vocab_size"], cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"],
                      cfg["num_heads"], cfg["num_layers"], cfg["relative_attention_num_buckets"]).eval()
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Small q / k: T5 does not scale its scores; norms near 1.
            scale = 0.1 if name.endswith(("attn.q.weight", "attn.k.weight")) else 0.3
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=gen))

    os.makedirs(os.path.join(out, "umt5_encoder"), exist_ok=True)
    with open(os.path.join(out, "umt5_encoder", "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(out, "umt5_encoder", "model.safetensors"),
                      {transformers_name(k): v for k, v in state.items()})
    torch.save(state, os.path.join(out, "umt5_wan.pth"))

    # 40 tokens: the relative positions reach the log-spaced buckets (max_exact 8).
    max_length = 40
    sp = spm.SentencePieceProcessor(model_file=spiece)
    prompts = ["a red fox in the snow",
               "two cats play chess on a wooden table while the rain falls outside the window of the old house "
               "by the sea, and a dog sleeps",
               "x"]
    ids, mask = [], []
    for p in prompts:
        body = sp.encode(p)[:max_length - 1] + [1]
        ids.append(body + [0] * (max_length - len(body)))
        mask.append([1] * len(body) + [0] * (max_length - len(body)))
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    with torch.no_grad():
        last = model(ids, mask)
    seq_lens = mask.gt(0).sum(dim=1).long()
    embeds = torch.stack([torch.cat([u[:v], u.new_zeros(max_length - v, u.size(1))]) for u, v in zip(last, seq_lens)])
    write_safetensors(os.path.join(out, "umt5_io.safetensors"),
                      {"input_ids": ids, "attention_mask": mask, "last_hidden_state": last,
                       "prompt_embeds": embeds})
    with open(os.path.join(out, "umt5_prompts.json"), "w") as f:
        json.dump({"max_length": max_length, "prompts": prompts}, f, indent=1)
        f.write("\n")
    print("token counts:", seq_lens.tolist())


if __name__ == "__main__":
    main()
