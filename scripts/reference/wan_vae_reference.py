#!/usr/bin/env python3
"""Generates the Wan2.1 video autoencoder's reference fixtures, and the small
PyTorch zip checkpoints the .pth reader is tested on.

Autoencoder: the ORIGINAL code, github.com/Wan-Video/Wan2.1 @
9737cba (vae.py as of its first commit, 65386b2), wan/modules/vae.py (WanVAE_, Encoder3d, Decoder3d, CausalConv3d,
Resample, ResidualBlock, AttentionBlock), loaded unchanged from a checkout
given with --src, after supplying what Debian's torch 1.13 lacks (CPU,
float32):
  * `einops` (not packaged for Debian 12): a stand-in whose `rearrange` does
    exactly the patterns vae.py uses and refuses any other;
  * `torch.nn.functional.scaled_dot_product_attention` (torch >= 2.0): plain
    softmax(QK^T / sqrt(d)) V in float64, cast back to q's dtype.
WanVAE_ is built directly (its `_video_vae` builder needs torch >= 2 for
torch.device('meta') and load_state_dict(assign=True)); encode and decode are
the original methods: the video in chunks of 1, 4, 4, ... frames, the latents
one frame per chunk, through feat_cache.

Model: dim 4, z_dim 16, dim_mult [1, 2, 2, 2], num_res_blocks 1,
attn_scales [], temperal_downsample [False, True, True]: Wan2.1's structure
(four levels, 4x in time, 8x in space, 16 latent channels) at widths small
enough for ~200 KB files. Weights from torch.Generator
seeded 20251126: conv weights N(0, 1/fan_in), biases N(0, 0.1^2), RMS-norm
gammas 1 + N(0, 0.1^2); the decoder's last conv scaled by 0.3 so that most
of the output lies inside the [-1, 1] that decoding clamps to.

The same weights are written in both published layouts:
  * Wan's: torch.save(model.state_dict()) as Wan2.1_VAE.pth is;
  * diffusers': renamed as diffusers' converter (scripts/convert_wan_to_diffusers.py,
    convert_vae) does (conv1 -> quant_conv, decoder.upsamples.N -> up_blocks.L.resnets.M /
    upsamplers.0, residual.0/2/3/6 -> norm1/conv1/norm2/conv2, ...), with
    diffusers' config.json.

Writes (relative to --out, the repository's tests/fixtures):
  wan_vae_tiny/original/Wan2.1_VAE.pth
  wan_vae_tiny/diffusers/config.json, diffusion_pytorch_model.safetensors
  wan_vae_tiny_io.safetensors
      input.latents   (1, 16, 3, 3, 4)   decode's input: sin(0.7 i) * 1.5 over the flat index i
      output.decoded  (1, 3, 9, 24, 32)  WanVAE_.decode(latents, scale=[0, 1]), clamped to [-1, 1] as diffusers' decode
      input.video     (1, 3, 9, 24, 32)  encode's input: sin(0.37 i + 0.2) * 0.9
      output.mu       (1, 16, 3, 3, 4)   WanVAE_.encode(video, scale=[0, 1])
      output.log_var  (1, 16, 3, 3, 4)   the other half of the moments (encode_log_var below)
      output.mu_scaled (1, 16, 3, 3, 4)  WanVAE_.encode(video, scale=[mean, 1/std]) (Wan2.1's mean/std)
  torch_zip/nested.pth      {'state_dict': {'a.weight': f32 (3, 4) = arange(12) * 0.5 - 1,
                             'b': {'bias': bf16 (5,) = [1.5, -2, 0.25, 3, 7]}, 'c': i64 (2,) = [7, -9],
                             't': f32 (4, 3) = a.weight.t() (strided view), 'tail': f32 (8,) = a.weight's
                             storage [4:] (a view with a storage offset)}, 'epoch': 3}
  torch_zip/flat.pth        {'x': f16 (2, 2) = [[1, 2], [3, 4]]}
  torch_zip/legacy.pth      the same as flat.pth in the pre-1.6 (non-zip) format

Usage:
  git clone https://github.com/Wan-Video/Wan2.1 /tmp/ref/wan && git -C /tmp/ref/wan checkout 9737cba
  /usr/bin/python3 scripts/reference/wan_vae_reference.py --src /tmp/ref/wan --out tests/fixtures
"""
import argparse
import importlib.util
import json
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402

SEED = 20251126
MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]
CFG = dict(dim=4, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
           temperal_downsample=[False, True, True], dropout=0.0)


# ---------------------------------------------------------------- stand-ins
def rearrange(x, pattern, **axes):
    if pattern == "b c t h w -> (b t) c h w":
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if pattern in ("(b t) c h w -> b c t h w", "(b t) c h w-> b c t h w"):
        bt, c, h, w = x.shape
        t = axes["t"]
        return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
    raise NotImplementedError(f"rearrange stand-in: pattern {pattern!r}")


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    assert attn_mask is None and dropout_p == 0.0 and not is_causal
    qd, kd, vd = q.double(), k.double(), v.double()
    s = qd @ kd.transpose(-1, -2) * q.size(-1) ** -0.5
    return (torch.softmax(s, dim=-1) @ vd).to(q.dtype)


def load_original(src):
    sys.modules["einops"] = types.SimpleNamespace(rearrange=rearrange)
    assert not hasattr(torch.nn.functional, "scaled_dot_product_attention"), "torch >= 2: drop the stand-in"
    torch.nn.functional.scaled_dot_product_attention = scaled_dot_product_attention
    spec = importlib.util.spec_from_file_location("wan_vae_original", os.path.join(src, "wan/modules/vae.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- weights
def init_weights(model):
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        model.decoder.head[2].weight.mul_(0.3)


# ---------------------------------------------------------------- names
RESIDUAL = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight",
            "residual.2.bias": "conv1.bias", "residual.3.gamma": "norm2.gamma",
            "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
            "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}


def to_diffusers(name, num_res_blocks):
    """One of Wan's names -> diffusers' AutoencoderKLWan name (as convert_vae renames)."""
    parts = name.split(".")
    if parts[0] == "conv1":
        return "quant_conv." + ".".join(parts[1:])
    if parts[0] == "conv2":
        return "post_quant_conv." + ".".join(parts[1:])
    side, rest = parts[0], parts[1:]
    tail = ".".join(rest[1:])
    if rest[0] == "conv1":
        return f"{side}.conv_in.{tail}"
    if rest[0] == "head":
        return f"{side}.{'norm_out' if rest[1] == '0' else 'conv_out'}.{'.'.join(rest[2:])}"
    if rest[0] == "middle":
        idx, leaf = int(rest[1]), ".".join(rest[2:])
        if idx == 1:
            return f"{side}.mid_block.attentions.0.{leaf}"
        return f"{side}.mid_block.resnets.{idx // 2}.{RESIDUAL[leaf]}"
    if rest[0] == "downsamples":  # a flat list in both layouts
        idx, leaf = rest[1], ".".join(rest[2:])
        return f"encoder.down_blocks.{idx}.{RESIDUAL.get(leaf, leaf)}"
    if rest[0] == "upsamples":  # per level: num_res_blocks + 1 resnets, then a resample
        idx, leaf = int(rest[1]), ".".join(rest[2:])
        per = num_res_blocks + 2
        level, j = divmod(idx, per)
        if j <= num_res_blocks:
            return f"decoder.up_blocks.{level}.resnets.{j}.{RESIDUAL[leaf]}"
        return f"decoder.up_blocks.{level}.upsamplers.0.{leaf}"
    raise ValueError(name)


def diffusers_config():
    return {"_class_name": "AutoencoderKLWan", "_diffusers_version": "0.33.0.dev0", "attn_scales": [],
            "base_dim": CFG["dim"], "dim_mult": CFG["dim_mult"], "dropout": 0.0, "latents_mean": MEAN,
            "latents_std": STD, "num_res_blocks": CFG["num_res_blocks"],
            "temperal_downsample": CFG["temperal_downsample"], "z_dim": CFG["z_dim"]}


def encode_log_var(model, x):
    """The log-variance half of the moments: WanVAE_.encode's own chunk loop
    (1, 4, 4, ... frames through feat_cache), transcribed, since encode
    returns the mean only at this commit."""
    model.clear_cache()
    outs = []
    for i in range(1 + (x.shape[2] - 1) // 4):
        model._enc_conv_idx = [0]
        chunk = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
        outs.append(model.encoder(chunk, feat_cache=model._enc_feat_map, feat_idx=model._enc_conv_idx))
    model.clear_cache()
    return model.conv1(torch.cat(outs, 2)).chunk(2, dim=1)[1]


def flat_sin(shape, a, b, amp):
    n = 1
    for s in shape:
        n *= s
    return (torch.arange(n, dtype=torch.float64) * a + b).sin().mul(amp).float().reshape(shape)


def write_torch_zip_fixtures(out):
    d = os.path.join(out, "torch_zip")
    os.makedirs(d, exist_ok=True)
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
    nested = {"state_dict": {"a.weight": a,
                             "b": {"bias": torch.tensor([1.5, -2, 0.25, 3, 7], dtype=torch.bfloat16)},
                             "c": torch.tensor([7, -9], dtype=torch.int64),
                             "t": a.t(), "tail": a.view(-1)[4:]},
              "epoch": 3}
    assert nested["state_dict"]["tail"].storage_offset() == 4
    torch.save(nested, os.path.join(d, "nested.pth"))
    flat = {"x": torch.tensor([[1, 2], [3, 4]], dtype=torch.float16)}
    torch.save(flat, os.path.join(d, "flat.pth"))
    torch.save(flat, os.path.join(d, "legacy.pth"), _use_new_zipfile_serialization=False)
    back = torch.load(os.path.join(d, "nested.pth"))
    assert torch.equal(back["state_dict"]["t"], a.t())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    write_torch_zip_fixtures(args.out)

    vae = load_original(args.src)
    model = vae.WanVAE_(**CFG).eval().requires_grad_(False)
    init_weights(model)
    state = model.state_dict()

    orig_dir = os.path.join(args.out, "wan_vae_tiny/original")
    diff_dir = os.path.join(args.out, "wan_vae_tiny/diffusers")
    os.makedirs(orig_dir, exist_ok=True)
    os.makedirs(diff_dir, exist_ok=True)
    torch.save(state, os.path.join(orig_dir, "Wan2.1_VAE.pth"))
    renamed = {to_diffusers(k, CFG["num_res_blocks"]): v for k, v in state.items()}
    assert len(renamed) == len(state)
    write_safetensors(os.path.join(diff_dir, "diffusion_pytorch_model.safetensors"), renamed)
    with open(os.path.join(diff_dir, "config.json"), "w") as f:
        json.dump(diffusers_config(), f, indent=2)

    with torch.no_grad():
        latents = flat_sin((1, 16, 3, 3, 4), 0.7, 0.0, 1.5)
        decoded = model.decode(latents, [0.0, 1.0]).clamp(-1, 1)  # the identity scale
        video = flat_sin((1, 3, 9, 24, 32), 0.37, 0.2, 0.9)
        mu = model.encode(video, [0.0, 1.0])
        log_var = encode_log_var(model, video)
        scale = [torch.tensor(MEAN), 1.0 / torch.tensor(STD)]
        mu_scaled = model.encode(video, scale)
    inside = (decoded.abs() < 1).float().mean().item()
    print(f"decoded {tuple(decoded.shape)}, {inside:.0%} inside (-1, 1); mu {tuple(mu.shape)}")
    write_safetensors(os.path.join(args.out, "wan_vae_tiny_io.safetensors"),
                      {"input.latents": latents, "output.decoded": decoded, "input.video": video,
                       "output.mu": mu, "output.log_var": log_var, "output.mu_scaled": mu_scaled},
                      {"source": "scripts/reference/wan_vae_reference.py", "wan_commit": "9737cba"})


if __name__ == "__main__":
    main()
