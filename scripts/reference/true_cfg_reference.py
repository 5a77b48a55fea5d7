#!/usr/bin/env python3
"""Generates tests/fixtures/true_cfg.safetensors: QwenImagePipeline's true
classifier-free guidance with its norm-preserving rescale, the lines of
src/diffusers/pipelines/qwenimage/pipeline_qwenimage.py (github:huggingface/diffusers,
the stored snapshot's HEAD) as written there:

    comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
    noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
    noise_pred = comb_pred * (cond_norm / noise_norm)

on seeded velocities (1, 24, 64) in float32 and bfloat16, scale 4.0 (the pipeline's default) and 1.5.

Usage: /usr/bin/python3 scripts/reference/true_cfg_reference.py --out tests/fixtures/true_cfg.safetensors
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_writer import write_safetensors  # noqa: E402


def true_cfg(noise_pred, neg_noise_pred, true_cfg_scale):
    comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
    noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
    return comb_pred * (cond_norm / noise_norm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    gen = torch.Generator().manual_seed(20251126)
    cond = torch.randn((1, 24, 64), generator=gen)
    uncond = cond + 0.5 * torch.randn((1, 24, 64), generator=gen)
    t = {"cond": cond, "uncond": uncond}
    for scale in (4.0, 1.5):
        t[f"f32_scale{scale}"] = true_cfg(cond, uncond, scale)
        t[f"bf16_scale{scale}"] = true_cfg(cond.bfloat16(), uncond.bfloat16(), scale)
    write_safetensors(out, t)


if __name__ == "__main__":
    main()
