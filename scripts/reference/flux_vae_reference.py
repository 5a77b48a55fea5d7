#!/usr/bin/env python3
"""Generates the Flux image-side reference fixtures: autoencoder, scheduler,
latent packing and initial noise.

Autoencoder: the ORIGINAL code, github.com/black-forest-labs/flux @
802fb4713906133fcbd0d8dc5351620ca4773036, src/flux/modules/autoencoder.py
(Encoder, Decoder, AutoEncoder), imported unchanged from a checkout given
with --src, after supplying what Debian's torch 1.13 lacks (CPU, float32):
  * `einops` (not packaged for Debian 12): a stand-in whose `rearrange` does
    exactly the two patterns the autoencoder uses and refuses any other;
  * `torch.nn.functional.scaled_dot_product_attention` (torch >= 2.0): plain
    softmax(QK^T / sqrt(d)) V in float64, cast back to q's dtype.
The same weights are also written under diffusers' AutoencoderKL names, renamed
as diffusers' own converter does (src/diffusers/loaders/single_file_utils.py,
convert_ldm_vae_checkpoint: mid.attn_1.q -> mid_block.attentions.0.to_q with
the 1x1 conv squeezed to a linear weight, up.N -> up_blocks.(levels-1-N), ...).
The pipeline conventions around the autoencoder are diffusers' (huggingface/
diffusers @ 58eb52c080): FluxPipeline decodes latents / scaling_factor +
shift_factor, VaeImageProcessor.postprocess maps [-1, 1] to uint8 by
(x * 0.5 + 0.5).clamp(0, 1) * 255 then round; encoding keeps
DiagonalGaussianDistribution's mean, or samples mean + exp(0.5 *
clamp(logvar, -30, 20)) * randn(generator) (randn_tensor on the CPU), then
(z - shift_factor) * scaling_factor.

Model: resolution 64, in_channels 3, ch 32, out_ch 3, ch_mult [1, 2],
num_res_blocks 1, z_channels 16 (diffusers: block_out_channels [32, 64],
layers_per_block 1, norm_num_groups 32 -- BFL's code fixes 32 groups),
scale_factor 0.3611, shift_factor 0.1159. Weights from torch.Generator seeded
20251125: conv weights N(0, 1/fan_in), biases N(0, 0.1^2), norm weights
1 + N(0, 0.1^2); rounded to bfloat16 and stored as BF16 (as diffusers' FLUX.1
vae is) so the fixture stays small; the reference runs in float32 on exactly
those values.

Scheduler: FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=..., mu=...)
as FluxPipeline calls it (scheduling_flow_match_euler_discrete.py,
pipeline_flux.py calculate_shift / retrieve_timesteps), transcribed below
step for step with numpy float32 as the original computes, for FLUX.1-dev's
and FLUX.1-schnell's scheduler_config.json.

Writes (relative to --out, the repository's tests/fixtures):
  flux_vae_tiny/diffusers/config.json, diffusion_pytorch_model.safetensors
  flux_vae_tiny/bfl/ae.safetensors
  flux_vae_tiny_io.safetensors   decode: input.latents (1, 16, 12, 20),
                                 output.decoded (1, 3, 24, 40), output.pixels (1, 24, 40, 3);
                                 encode: input.image (1, 3, 24, 40), output.mean,
                                 output.sample (seed 7), all (1, 16, 12, 20); F32
  flux_latents.safetensors       pack/unpack, image ids, initial noise for a 72 x 104 image, batch 2 (F32 and BF16)
  flux_scheduler.json            sigmas and timesteps for (config, steps, height, width)

Usage:
  git clone https://github.com/black-forest-labs/flux /tmp/ref/flux
  git -C /tmp/ref/flux checkout 802fb4713906133fcbd0d8dc5351620ca4773036
  /usr/bin/python3 scripts/reference/flux_vae_reference.py --src /tmp/ref/flux --out tests/fixtures
"""
import argparse
import json
import math
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import read_safetensors, write_safetensors  # noqa: E402

SEED = 20251125
SAMPLE_SEED = 7
NOISE_SEED = 42
COMMIT = "802fb4713906133fcbd0d8dc5351620ca4773036"
SCALING, SHIFT = 0.3611, 0.1159


# ---------------------------------------------------------------- stand-ins
def rearrange(x, pattern, **axes):
    if pattern == "b c h w -> b 1 (h w) c":
        b, c, h, w = x.shape
        return x.reshape(b, c, h * w).transpose(1, 2).unsqueeze(1)
    if pattern == "b 1 (h w) c -> b c h w":
        return x.squeeze(1).transpose(1, 2).reshape(axes["b"], axes["c"], axes["h"], axes["w"])
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
    sys.path.insert(0, os.path.join(src, "src"))
    import flux.modules.autoencoder as ae  # noqa: E402
    return ae


# ---------------------------------------------------------------- names
def bfl_to_diffusers(name, levels):
    """One BFL ae.safetensors name -> diffusers' AutoencoderKL name (as
    convert_ldm_vae_checkpoint renames)."""
    import re
    rules = [
        (r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out."),
        (r"^(encoder|decoder)\.mid\.block_(\d)\.", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
        (r"^(encoder|decoder)\.mid\.attn_1\.norm\.", r"\1.mid_block.attentions.0.group_norm."),
        (r"^(encoder|decoder)\.mid\.attn_1\.(q|k|v)\.", r"\1.mid_block.attentions.0.to_\2."),
        (r"^(encoder|decoder)\.mid\.attn_1\.proj_out\.", r"\1.mid_block.attentions.0.to_out.0."),
        (r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
        (r"^encoder\.down\.(\d+)\.downsample\.conv\.", r"encoder.down_blocks.\1.downsamplers.0.conv."),
        (r"^decoder\.up\.(\d+)\.block\.(\d+)\.", lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets.{m[2]}."),
        (r"^decoder\.up\.(\d+)\.upsample\.conv\.",
         lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv."),
    ]
    for pat, rep in rules:
        new = re.sub(pat, rep, name)
        if new != name:
            name = new
            break
    return name.replace(".nin_shortcut.", ".conv_shortcut.")


def diffusers_state(bfl, levels):
    out = {}
    for name, t in bfl.items():
        new = bfl_to_diffusers(name, levels)
        if ".attentions.0.to_" in new and new.endswith(".weight"):
            t = t.reshape(t.shape[0], t.shape[1])  # 1x1 conv -> linear
        out[new] = t
    return out


# ---------------------------------------------------------------- scheduler
def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def flux_schedule(config, steps, height, width):
    """FluxPipeline: sigmas, mu, retrieve_timesteps -> scheduler.set_timesteps."""
    vae_scale_factor = 8
    h = 2 * (int(height) // (vae_scale_factor * 2))
    w = 2 * (int(width) // (vae_scale_factor * 2))
    image_seq_len = (h // 2) * (w // 2)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    # set_timesteps(sigmas=sigmas, mu=mu)
    sigmas = np.array(sigmas).astype(np.float32)
    if config["use_dynamic_shifting"]:
        sigmas = math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)  # _time_shift_exponential
    else:
        shift = config["shift"]
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32)
    timesteps = sigmas * config["num_train_timesteps"]
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    return image_seq_len, mu, sigmas, timesteps


DEV_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                 "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                 "use_dynamic_shifting": True}
SCHNELL_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                     "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 1.0,
                     "use_dynamic_shifting": False}


def write_scheduler(out):
    cases = []
    for name, cfg, steps, height, width in [("dev", DEV_SCHEDULER, 28, 1024, 1024), ("dev", DEV_SCHEDULER, 50, 512, 768),
                                            ("dev", DEV_SCHEDULER, 1, 256, 256), ("dev", DEV_SCHEDULER, 20, 1360, 760),
                                            ("dev", DEV_SCHEDULER, 8, 2048, 2048),
                                            ("schnell", SCHNELL_SCHEDULER, 4, 1024, 1024),
                                            ("schnell", SCHNELL_SCHEDULER, 3, 200, 264)]:
        seq, mu, sigmas, timesteps = flux_schedule(cfg, steps, height, width)
        cases.append({"config": name, "steps": steps, "height": height, "width": width, "image_seq_len": seq,
                      "mu": mu, "sigmas": [float(s) for s in sigmas], "timesteps": [float(t) for t in timesteps]})
    # One Euler step as scheduler.step takes it: float32, sample + (sigma_next - sigma) * v.
    gen = torch.Generator().manual_seed(SEED + 1)
    sample, v = torch.randn(1, 6, 8, generator=gen), torch.randn(1, 6, 8, generator=gen)
    seq, mu, sigmas, timesteps = flux_schedule(DEV_SCHEDULER, 28, 1024, 1024)
    step = sample.to(torch.float32) + (sigmas[3] - sigmas[2]) * v
    doc = {"source": "huggingface/diffusers@58eb52c080 scheduling_flow_match_euler_discrete.py, pipeline_flux.py",
           "generator": "scripts/reference/flux_vae_reference.py",
           "configs": {"dev": DEV_SCHEDULER, "schnell": SCHNELL_SCHEDULER}, "cases": cases,
           "step": {"config": "dev", "steps": 28, "height": 1024, "width": 1024, "index": 2,
                    "sample": sample.flatten().tolist(), "model_output": v.flatten().tolist(),
                    "shape": list(sample.shape), "prev_sample": step.flatten().tolist()}}
    with open(os.path.join(out, "flux_scheduler.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- latents
def prepare_latent_image_ids(height, width):
    ids = torch.zeros(height, width, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(height)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(width)[None, :]
    return ids.reshape(height * width, 3)


def pack_latents(latents, b, c, h, w):
    latents = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(latents, height, width, vae_scale_factor):
    b, _, channels = latents.shape
    height = 2 * (int(height) // (vae_scale_factor * 2))
    width = 2 * (int(width) // (vae_scale_factor * 2))
    latents = latents.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(b, channels // 4, height, width)


def write_latents(out):
    # 72 x 104 is no multiple of 16: the pipeline floors to an 8 x 12 latent (4 x 6 tokens).
    height, width, vsf, c = 72, 104, 8, 16
    h, w = 2 * (height // (vsf * 2)), 2 * (width // (vsf * 2))
    t = {"input.height": torch.tensor([height]), "input.width": torch.tensor([width])}
    for dtype, tag in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
        gen = torch.Generator().manual_seed(NOISE_SEED)
        noise = torch.randn((2, c, h, w), generator=gen, dtype=dtype)  # randn_tensor on the CPU
        t[f"noise.{tag}"] = noise
        t[f"packed.{tag}"] = pack_latents(noise, 2, c, h, w)
    t["image_ids"] = prepare_latent_image_ids(h // 2, w // 2)
    # Unpacking gives the noise back (the test checks ours does too).
    assert torch.equal(unpack_latents(t["packed.f32"], height, width, vsf), t["noise.f32"])
    write_safetensors(os.path.join(out, "flux_latents.safetensors"), t,
                      {"source": "huggingface/diffusers@58eb52c080 pipeline_flux.py", "seed": NOISE_SEED})


# ---------------------------------------------------------------- autoencoder
def init_weights(model):
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                v = torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel())
            elif "norm" in name and name.endswith("weight"):
                v = 1 + 0.1 * torch.randn(p.shape, generator=gen)
            else:
                v = 0.1 * torch.randn(p.shape, generator=gen)
            p.copy_(v.to(torch.bfloat16).float())


def write_autoencoder(ae_mod, out):
    params = ae_mod.AutoEncoderParams(resolution=64, in_channels=3, ch=32, out_ch=3, ch_mult=[1, 2],
                                      num_res_blocks=1, z_channels=16, scale_factor=SCALING, shift_factor=SHIFT)
    model = ae_mod.AutoEncoder(params).eval()
    init_weights(model)
    gen = torch.Generator().manual_seed(SEED + 2)
    latents = torch.randn(1, 16, 12, 20, generator=gen)
    image = torch.rand(1, 3, 24, 40, generator=gen) * 2 - 1
    with torch.no_grad():
        decoded = model.decode(latents)  # z / scale_factor + shift_factor -> decoder
        pixels = ((decoded * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1) * 255).round()
        moments = model.encoder(image)
        mean, logvar = torch.chunk(moments, 2, dim=1)
        std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
        sample = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(SAMPLE_SEED))
        mean_latents = (mean - SHIFT) * SCALING
        sample_latents = (sample - SHIFT) * SCALING
        # BFL's own encode without sampling is the same mean.
        model.reg.sample = False
        assert torch.allclose(model.encode(image), mean_latents, atol=1e-6)

    bfl = {name: p.detach().to(torch.bfloat16) for name, p in model.state_dict().items()}
    diff = diffusers_state(bfl, len(params.ch_mult))
    assert len(diff) == len(bfl)
    meta = {"source": f"black-forest-labs/flux@{COMMIT} src/flux/modules/autoencoder.py AutoEncoder",
            "generator": "scripts/reference/flux_vae_reference.py", "seed": SEED}
    folder = os.path.join(out, "flux_vae_tiny")
    os.makedirs(os.path.join(folder, "bfl"), exist_ok=True)
    os.makedirs(os.path.join(folder, "diffusers"), exist_ok=True)
    write_safetensors(os.path.join(folder, "bfl", "ae.safetensors"), bfl, meta)
    write_safetensors(os.path.join(folder, "diffusers", "diffusion_pytorch_model.safetensors"), diff, meta)
    config = {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 64],
              "down_block_types": ["DownEncoderBlock2D"] * 2, "force_upcast": True, "in_channels": 3,
              "latent_channels": 16, "latents_mean": None, "latents_std": None, "layers_per_block": 1,
              "mid_block_add_attention": True, "norm_num_groups": 32, "out_channels": 3, "sample_size": 64,
              "scaling_factor": SCALING, "shift_factor": SHIFT, "up_block_types": ["UpDecoderBlock2D"] * 2,
              "use_post_quant_conv": False, "use_quant_conv": False}
    with open(os.path.join(folder, "diffusers", "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    io = {"input.latents": latents, "output.decoded": decoded, "output.pixels": pixels, "input.image": image,
          "output.mean": mean_latents, "output.sample": sample_latents,
          "input.sample_seed": torch.tensor([SAMPLE_SEED])}
    write_safetensors(os.path.join(out, "flux_vae_tiny_io.safetensors"), io, meta)
    back = read_safetensors(os.path.join(folder, "bfl", "ae.safetensors"))
    assert all(torch.equal(back[n], bfl[n]) for n in bfl)
    print(f"vae: {len(bfl)} tensors, {sum(t.numel() for t in bfl.values())} parameters; decoded "
          f"max |x| = {decoded.abs().max().item():.4g}, mean latents max |z| = {mean_latents.abs().max().item():.4g}, "
          f"pixels in [{pixels.min().item():.0f}, {pixels.max().item():.0f}]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="checkout of black-forest-labs/flux")
    ap.add_argument("--out", required=True, help="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    write_autoencoder(load_original(args.src), args.out)
    write_scheduler(args.out)
    write_latents(args.out)


if __name__ == "__main__":
    main()
