#!/usr/bin/env python3
"""Generates tests/fixtures/qwen_pipeline_io.safetensors: Qwen-Image's pipeline
around its transformer, for fixed inputs, as diffusers computes it.

Transcribed with the same torch operations from github:huggingface/diffusers
(the stored snapshot's HEAD, 06d92ba):
  * pipelines/qwenimage/pipeline_qwenimage.py: prepare_latents (randn_tensor of
    (1, 1, 16, h, w) from torch.Generator("cpu").manual_seed(seed) in the
    prompt's dtype, then _pack_latents), img_shapes = [(1, h // 2, w // 2)],
    sigmas = linspace(1, 1 / steps, steps) and mu = calculate_shift(tokens, ...),
    the true-CFG combination with its norm rescale, _unpack_latents, and the
    decode: latents / (1 / latents_std) + latents_mean, vae.decode(...)[:, :, 0],
    VaeImageProcessor.postprocess (x / 2 + 0.5, clamp, * 255, round);
  * models/transformers/transformer_qwenimage.py: QwenEmbedRope (theta 10000,
    axes_dim [16, 56, 56], scale_rope=True) for the image's and the text's
    rotary frequencies;
  * schedulers/scheduling_flow_match_euler_discrete.py: set_timesteps and step
    (qwen_scheduler_reference.schedule, already checked against it).
The VAE is the ORIGINAL Wan2.1 autoencoder (github:Wan-Video/Wan2.1 @ 9737cba,
wan/modules/vae.py, loaded as wan_vae_reference.py does) with the weights of
tests/fixtures/wan_vae_tiny (the same seed), run on one latent frame: that is
what AutoencoderKLQwenImage is. Its mean and std are Qwen/Qwen-Image's
vae/config.json latents_mean / latents_std (the same numbers as Wan2.1's).

Inputs: a 48x80 picture (latents 6x10, packed 3x5 = 15 tokens of 64), seed 7,
4 steps; step index 1 with velocities cond = sin(0.3 i), uncond = cos(0.17 i) *
0.8 over the flat index, true_cfg_scale 4.

Usage:
  git clone https://github.com/Wan-Video/Wan2.1 /tmp/ref/wan && git -C /tmp/ref/wan checkout 9737cba
  /usr/bin/python3 scripts/reference/qwen_pipeline_reference.py --src /tmp/ref/wan --out tests/fixtures
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen_scheduler_reference import QWEN_SCHEDULER, schedule  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402
import wan_vae_reference as wan_vae  # noqa: E402

HEIGHT, WIDTH, SEED, STEPS, STEP, SCALE, TEXT_LEN = 48, 80, 7, 4, 1, 4.0, 5
VAE_SCALE_FACTOR = 8


# ---- pipeline_qwenimage.py ---------------------------------------------------
def pack_latents(latents, batch_size, num_channels_latents, height, width):
    latents = latents.view(batch_size, num_channels_latents, height // 2, 2, width // 2, 2)
    latents = latents.permute(0, 2, 4, 1, 3, 5)
    return latents.reshape(batch_size, (height // 2) * (width // 2), num_channels_latents * 4)


def unpack_latents(latents, height, width, vae_scale_factor):
    batch_size, num_patches, channels = latents.shape
    height = 2 * (int(height) // (vae_scale_factor * 2))
    width = 2 * (int(width) // (vae_scale_factor * 2))
    latents = latents.view(batch_size, height // 2, width // 2, channels // 4, 2, 2)
    latents = latents.permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch_size, channels // (2 * 2), 1, height, width)


def prepare_latents(num_channels_latents, height, width, dtype, seed):
    height = 2 * (int(height) // (VAE_SCALE_FACTOR * 2))
    width = 2 * (int(width) // (VAE_SCALE_FACTOR * 2))
    shape = (1, 1, num_channels_latents, height, width)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn(shape, generator=generator, dtype=dtype)
    return pack_latents(latents, 1, num_channels_latents, height, width)


def true_cfg(noise_pred, neg_noise_pred, true_cfg_scale):
    comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
    noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
    return comb_pred * (cond_norm / noise_norm)


# ---- transformer_qwenimage.py: QwenEmbedRope ---------------------------------
def rope_params(index, dim, theta=10000):
    freqs = torch.outer(index, 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float32).div(dim)))
    return torch.polar(torch.ones_like(freqs), freqs)


def qwen_embed_rope(video_fhw, txt_seq_lens, axes_dim=(16, 56, 56), theta=10000, scale_rope=True):
    pos_index = torch.arange(4096)
    neg_index = torch.arange(4096).flip(0) * -1 - 1
    pos_freqs = torch.cat([rope_params(pos_index, d, theta) for d in axes_dim], dim=1)
    neg_freqs = torch.cat([rope_params(neg_index, d, theta) for d in axes_dim], dim=1)
    vid_freqs, max_vid_index = [], 0
    for idx, (frame, height, width) in enumerate(video_fhw):
        seq_lens = frame * height * width
        freqs_pos = pos_freqs.split([x // 2 for x in axes_dim], dim=1)
        freqs_neg = neg_freqs.split([x // 2 for x in axes_dim], dim=1)
        freqs_frame = freqs_pos[0][idx:idx + frame].view(frame, 1, 1, -1).expand(frame, height, width, -1)
        freqs_height = torch.cat([freqs_neg[1][-(height - height // 2):], freqs_pos[1][:height // 2]], dim=0)
        freqs_height = freqs_height.view(1, height, 1, -1).expand(frame, height, width, -1)
        freqs_width = torch.cat([freqs_neg[2][-(width - width // 2):], freqs_pos[2][:width // 2]], dim=0)
        freqs_width = freqs_width.view(1, 1, width, -1).expand(frame, height, width, -1)
        vid_freqs.append(torch.cat([freqs_frame, freqs_height, freqs_width], dim=-1).reshape(seq_lens, -1))
        max_vid_index = max(height // 2, width // 2, max_vid_index)
    max_len = max(txt_seq_lens)
    return torch.cat(vid_freqs, dim=0), pos_freqs[max_vid_index:max_vid_index + max_len, ...]


# ---- scheduling_flow_match_euler_discrete.py: step ---------------------------
def euler_step(model_output, index, sample, sigmas):
    sample = sample.to(torch.float32)
    prev_sample = sample + (sigmas[index + 1] - sigmas[index]) * model_output
    return prev_sample.to(model_output.dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="a Wan2.1 checkout at 9737cba")
    ap.add_argument("--out", required=True, help="the repository's tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)

    h, w = 2 * (HEIGHT // 16), 2 * (WIDTH // 16)
    noise = prepare_latents(16, HEIGHT, WIDTH, torch.float32, SEED)
    noise_bf16 = prepare_latents(16, HEIGHT, WIDTH, torch.bfloat16, SEED)
    tokens = noise.shape[1]
    vid, txt = qwen_embed_rope([(1, h // 2, w // 2)], [TEXT_LEN])

    _, sigmas, timesteps = schedule(QWEN_SCHEDULER, STEPS, tokens)
    n = noise.numel()
    cond = (torch.arange(n, dtype=torch.float64) * 0.3).sin().float().reshape(noise.shape)
    uncond = ((torch.arange(n, dtype=torch.float64) * 0.17).cos() * 0.8).float().reshape(noise.shape)
    stepped = euler_step(true_cfg(cond, uncond, SCALE), STEP, noise, sigmas)

    vae = wan_vae.load_original(args.src)
    model = vae.WanVAE_(**wan_vae.CFG).eval().requires_grad_(False)
    wan_vae.init_weights(model)  # the weights of tests/fixtures/wan_vae_tiny
    latents = unpack_latents(stepped, HEIGHT, WIDTH, VAE_SCALE_FACTOR)
    latents_mean = torch.tensor(wan_vae.MEAN).view(1, 16, 1, 1, 1)
    latents_std = 1.0 / torch.tensor(wan_vae.STD).view(1, 16, 1, 1, 1)
    z = latents / latents_std + latents_mean
    with torch.no_grad():
        decoded = model.decode(z, [0.0, 1.0]).clamp(-1, 1)[:, :, 0]  # diffusers' decode clamps
    image = ((decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.int64)
    print(f"tokens {tokens}, sigmas {sigmas.tolist()}, decoded {tuple(decoded.shape)}")
    write_safetensors(os.path.join(args.out, "qwen_pipeline_io.safetensors"),
                      {"noise": noise, "noise_bf16": noise_bf16,
                       "rope.img_cos": vid.real.contiguous(), "rope.img_sin": vid.imag.contiguous(),
                       "rope.txt_cos": txt.real.contiguous(), "rope.txt_sin": txt.imag.contiguous(),
                       "sigmas": sigmas, "timesteps": timesteps,
                       "cond": cond, "uncond": uncond, "stepped": stepped,
                       "denormalized": z, "decoded": decoded, "image": image},
                      {"source": "scripts/reference/qwen_pipeline_reference.py", "height": HEIGHT,
                       "width": WIDTH, "seed": SEED, "steps": STEPS, "step": STEP, "scale": SCALE,
                       "text_len": TEXT_LEN})


if __name__ == "__main__":
    main()
