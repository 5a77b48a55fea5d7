#!/usr/bin/env python3
"""Generates the Wan2.1 reference fixtures from the ORIGINAL model code.

Original: github.com/Wan-Video/Wan2.1 @ 9737cba9c1c3c4d04b33fcad41c111989865d315,
file wan/modules/model.py (class WanModel, model_type 't2v'). This script does
not copy that code: it reads the file from a checkout given with --src, patches
it in memory, and runs it (CPU, torch 1.13, float32):

  * `import torch.cuda.amp as amp` -> a no-op `amp.autocast` (context manager
    and decorator); everything here is float32 already, which is what the
    autocast(float32) regions ask for.
  * diffusers' ModelMixin / ConfigMixin / register_to_config -> nn.Module and
    no-ops (only used to save/load configs).
  * `from .attention import flash_attention` -> plain attention,
    softmax(QK^T / sqrt(d)) V computed in float64 with the k_lens mask, cast
    back to q's dtype (the original flash-attn kernels compute in bf16; this
    reference is the exact-math version of the same function).
Nothing else is changed.

Model: dim 64, ffn_dim 128, freq_dim 256, text_dim 32, text_len 512, 4 heads
(head dim 16), 2 layers, in/out 16 channels, patch (1, 2, 2), qk_norm,
cross_attn_norm, eps 1e-6. Every parameter (norm weights and modulations
included) is N(0, 1) * 0.2 from torch.Generator seeded 20251125.
Inputs: one latent video x (16, 2, 8, 10), t = 700 (Wan's 0..1000 scale), one
text of 7 tokens x 32 (the model zero-pads it to 512 itself), seq_len 40.

Writes (relative to --out, the repository's tests/fixtures):
  wan_tiny/diffusion_pytorch_model.safetensors  every weight, original Wan names
  wan_tiny/config.json                          Wan's own config.json fields
  wan_tiny_io.safetensors                       input.x (1,16,2,8,10), input.t (1,),
                                                input.context (1,7,32), output (1,16,2,8,10)

Usage:
  git clone https://github.com/Wan-Video/Wan2.1 /tmp/ref/Wan2.1
  git -C /tmp/ref/Wan2.1 checkout 9737cba9c1c3c4d04b33fcad41c111989865d315
  python3 scripts/reference/wan_reference.py --src /tmp/ref/Wan2.1 --out tests/fixtures
"""
import argparse
import json
import os
import sys
import types

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import read_safetensors, write_safetensors  # noqa: E402

SEED = 20251125
SCALE = 0.2
COMMIT = "9737cba9c1c3c4d04b33fcad41c111989865d315"


class _NoAutocast:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        return fn


def flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                    causal=False, window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16, version=None):
    """q (B, Lq, N, D), k/v (B, Lk, N, D) -> (B, Lq, N, D), in float64."""
    assert not causal and tuple(window_size) == (-1, -1) and dropout_p == 0.0 and q_lens is None
    out_dtype = q.dtype
    d = q.size(-1)
    qd, kd, vd = (x.to(torch.float64).transpose(1, 2) for x in (q, k, v))
    if q_scale is not None:
        qd = qd * q_scale
    s = qd @ kd.transpose(-1, -2) * (softmax_scale if softmax_scale is not None else d ** -0.5)
    if k_lens is not None:
        keep = torch.arange(k.size(1))[None, :] < k_lens.to(torch.long)[:, None]  # (B, Lk)
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
    x = torch.softmax(s, dim=-1) @ vd
    return x.transpose(1, 2).to(out_dtype)


def load_original(src):
    path = os.path.join(src, "wan", "modules", "model.py")
    with open(path) as f:
        text = f.read()
    for old in ["import torch.cuda.amp as amp\n",
                "from diffusers.configuration_utils import ConfigMixin, register_to_config\n",
                "from diffusers.models.modeling_utils import ModelMixin\n",
                "from .attention import flash_attention\n"]:
        assert text.count(old) == 1, f"{path} no longer has {old!r}"
        text = text.replace(old, "")
    mod = types.ModuleType("wan_original_model")
    mod.__dict__.update(amp=types.SimpleNamespace(autocast=_NoAutocast), ModelMixin=nn.Module, ConfigMixin=object,
                        register_to_config=lambda f: f, flash_attention=flash_attention)
    exec(compile(text, path, "exec"), mod.__dict__)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="checkout of Wan-Video/Wan2.1")
    ap.add_argument("--out", required=True, help="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)

    wan = load_original(args.src)
    model = wan.WanModel(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=64, ffn_dim=128,
                         freq_dim=256, text_dim=32, out_dim=16, num_heads=4, num_layers=2, window_size=(-1, -1),
                         qk_norm=True, cross_attn_norm=True, eps=1e-6).eval()
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * SCALE)
    x = torch.randn(16, 2, 8, 10, generator=gen)
    context = torch.randn(7, 32, generator=gen)
    t = torch.tensor([700.0])
    seq_len = 2 * 8 * 10 // 4
    with torch.no_grad():
        out = model([x], t=t, context=[context], seq_len=seq_len)[0]
    assert out.shape == (16, 2, 8, 10) and out.dtype == torch.float32

    weights = {name: p.detach().clone() for name, p in model.state_dict().items()}
    meta = {"source": f"Wan-Video/Wan2.1@{COMMIT} wan/modules/model.py WanModel (t2v)",
            "generator": "scripts/reference/wan_reference.py", "seed": SEED, "scale": SCALE}
    folder = os.path.join(args.out, "wan_tiny")
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"), weights, meta)
    config = {"_class_name": "WanModel", "dim": 64, "ffn_dim": 128, "freq_dim": 256, "in_dim": 16,
              "num_heads": 4, "num_layers": 2, "out_dim": 16, "text_len": 512, "model_type": "t2v", "eps": 1e-06}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    io = {"input.x": x.unsqueeze(0), "input.t": t, "input.context": context.unsqueeze(0),
          "output": out.unsqueeze(0)}
    write_safetensors(os.path.join(args.out, "wan_tiny_io.safetensors"), io, meta)

    # Self-check: the files read back bit-identical, and the model rerun from
    # them gives the same output.
    back = read_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    assert set(back) == set(weights) and all(torch.equal(back[n], weights[n]) for n in weights)
    io_back = read_safetensors(os.path.join(args.out, "wan_tiny_io.safetensors"))
    assert all(torch.equal(io_back[n], io[n]) for n in io)
    print(f"wan: {len(weights)} tensors, {sum(w.numel() for w in weights.values())} parameters; "
          f"output max |y| = {out.abs().max().item():.6g}, mean |y| = {out.abs().mean().item():.6g}")


if __name__ == "__main__":
    main()
