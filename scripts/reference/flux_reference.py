#!/usr/bin/env python3
"""Generates the Flux.1 reference fixtures from the ORIGINAL model code.

Original: github.com/black-forest-labs/flux @ 802fb4713906133fcbd0d8dc5351620ca4773036,
files src/flux/model.py (Flux, FluxParams), src/flux/modules/layers.py and
src/flux/math.py. This script does not copy that code: it imports the `flux`
package from a checkout given with --src, unchanged, after supplying the two
things Debian's torch 1.13 lacks (CPU, float32):

  * `einops` (not packaged for Debian 12): a stand-in module whose
    `rearrange` does exactly the three patterns the model uses
    ("B L (K H D) -> K B H L D", "B H L D -> B L (H D)",
    "b n d (i j) -> b n d i j") and refuses any other.
  * `torch.nn.functional.scaled_dot_product_attention` (torch >= 2.0): plain
    softmax(QK^T / sqrt(d)) V computed in float64, cast back to q's dtype.
Nothing in the package is changed.

Model: in_channels 64, out_channels 64, vec_in_dim 16, context_in_dim 32,
hidden_size 64, mlp_ratio 4.0, num_heads 4, depth 2, depth_single_blocks 2,
axes_dim [4, 6, 6], theta 10000, qkv_bias, guidance_embed. Every parameter
(QK-norm scales included) is N(0, 1) * 0.2 from torch.Generator seeded
20251125, then rounded to bfloat16: the weights are stored as BF16, as Black
Forest Labs' own flux1-*.safetensors are (and so the file stays under 1 MB:
488,448 parameters). The reference runs in float32 with exactly those values.
Inputs: img (1, 20, 64) packed latent tokens of a 4 x 5 grid, img_ids (1, 20, 3)
= [0, row, col], txt (1, 7, 32), txt_ids zeros (1, 7, 3), timesteps [0.7],
y (1, 16), guidance [3.5].

Writes (relative to --out, the repository's tests/fixtures):
  flux_tiny/flux_tiny.safetensors  every weight, BFL names, BF16
  flux_tiny_io.safetensors         input.img, input.img_ids, input.txt, input.txt_ids,
                                   input.timesteps, input.y, input.guidance, output (1, 20, 64); F32

Usage:
  git clone https://github.com/black-forest-labs/flux /tmp/ref/flux
  git -C /tmp/ref/flux checkout 802fb4713906133fcbd0d8dc5351620ca4773036
  python3 scripts/reference/flux_reference.py --src /tmp/ref/flux --out tests/fixtures
"""
import argparse
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import read_safetensors, write_safetensors  # noqa: E402

SEED = 20251125
SCALE = 0.2
COMMIT = "802fb4713906133fcbd0d8dc5351620ca4773036"


def rearrange(x, pattern, **axes):
    if pattern == "B L (K H D) -> K B H L D":
        b, l, _ = x.shape
        return x.view(b, l, axes["K"], axes["H"], -1).permute(2, 0, 3, 1, 4)
    if pattern == "B H L D -> B L (H D)":
        b, h, l, d = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, l, h * d)
    if pattern == "b n d (i j) -> b n d i j":
        return x.view(*x.shape[:-1], axes["i"], axes["j"])
    raise NotImplementedError(f"rearrange stand-in: pattern {pattern!r}")


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    """q, k, v (B, H, L, D), in float64."""
    assert attn_mask is None and dropout_p == 0.0 and not is_causal
    qd, kd, vd = q.double(), k.double(), v.double()
    s = qd @ kd.transpose(-1, -2) * q.size(-1) ** -0.5
    return (torch.softmax(s, dim=-1) @ vd).to(q.dtype)


def load_original(src):
    sys.modules["einops"] = types.SimpleNamespace(rearrange=rearrange)
    assert not hasattr(torch.nn.functional, "scaled_dot_product_attention"), "torch >= 2: drop the stand-in"
    torch.nn.functional.scaled_dot_product_attention = scaled_dot_product_attention
    sys.path.insert(0, os.path.join(src, "src"))
    import flux.model  # noqa: E402
    return flux.model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="checkout of black-forest-labs/flux")
    ap.add_argument("--out", required=True, help="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)

    fm = load_original(args.src)
    params = fm.FluxParams(in_channels=64, out_channels=64, vec_in_dim=16, context_in_dim=32, hidden_size=64,
                           mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=[4, 6, 6],
                           theta=10_000, qkv_bias=True, guidance_embed=True)
    model = fm.Flux(params).eval()
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_((torch.randn(p.shape, generator=gen) * SCALE).to(torch.bfloat16).float())
    img = torch.randn(1, 20, 64, generator=gen)
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(1, 20, 3).float()
    txt = torch.randn(1, 7, 32, generator=gen)
    txt_ids = torch.zeros(1, 7, 3)
    timesteps = torch.tensor([0.7])
    y = torch.randn(1, 16, generator=gen)
    guidance = torch.tensor([3.5])
    with torch.no_grad():
        out = model(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, timesteps=timesteps, y=y, guidance=guidance)
    assert out.shape == (1, 20, 64) and out.dtype == torch.float32

    weights = {name: p.detach().to(torch.bfloat16) for name, p in model.state_dict().items()}
    assert all(torch.equal(weights[n].float(), p) for n, p in model.state_dict().items())
    meta = {"source": f"black-forest-labs/flux@{COMMIT} src/flux/model.py Flux",
            "generator": "scripts/reference/flux_reference.py", "seed": SEED, "scale": SCALE}
    folder = os.path.join(args.out, "flux_tiny")
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "flux_tiny.safetensors"), weights, meta)
    io = {"input.img": img, "input.img_ids": img_ids, "input.txt": txt, "input.txt_ids": txt_ids,
          "input.timesteps": timesteps, "input.y": y, "input.guidance": guidance, "output": out}
    write_safetensors(os.path.join(args.out, "flux_tiny_io.safetensors"), io, meta)

    back = read_safetensors(os.path.join(folder, "flux_tiny.safetensors"))
    assert set(back) == set(weights) and all(torch.equal(back[n], weights[n]) for n in weights)
    io_back = read_safetensors(os.path.join(args.out, "flux_tiny_io.safetensors"))
    assert all(torch.equal(io_back[n], io[n]) for n in io)
    print(f"flux: {len(weights)} tensors, {sum(w.numel() for w in weights.values())} parameters; "
          f"output max |y| = {out.abs().max().item():.6g}, mean |y| = {out.abs().mean().item():.6g}")


if __name__ == "__main__":
    main()
