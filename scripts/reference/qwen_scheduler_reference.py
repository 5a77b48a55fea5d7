#!/usr/bin/env python3
"""Generates tests/fixtures/qwen_scheduler.json: Qwen-Image's schedule as
QwenImagePipeline sets it (github:huggingface/diffusers, the stored snapshot's
HEAD: pipelines/qwenimage/pipeline_qwenimage.py calculate_shift and
sigmas = linspace(1, 1/steps, steps); schedulers/scheduling_flow_match_euler_discrete.py
set_timesteps: float32 sigmas, _time_shift_exponential, stretch_shift_to_terminal),
transcribed with the same numpy / torch operations.

Usage: /usr/bin/python3 scripts/reference/qwen_scheduler_reference.py --out tests/fixtures/qwen_scheduler.json
"""
import argparse
import json
import math

import numpy as np
import torch

QWEN_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                  "invert_sigmas": False, "max_image_seq_len": 8192, "max_shift": 0.9, "num_train_timesteps": 1000,
                  "shift": 1.0, "shift_terminal": 0.02, "stochastic_sampling": False, "time_shift_type": "exponential",
                  "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
                  "use_karras_sigmas": False}


def calculate_shift(image_seq_len, base_seq_len, max_seq_len, base_shift, max_shift):
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def schedule(c, steps, image_seq_len):
    sigmas = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift(image_seq_len, c["base_image_seq_len"], c["max_image_seq_len"], c["base_shift"],
                         c["max_shift"])
    sigmas = np.array(sigmas).astype(np.float32)
    sigmas = math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)
    if c["shift_terminal"]:
        one_minus_z = 1 - sigmas
        scale_factor = one_minus_z[-1] / (1 - c["shift_terminal"])
        sigmas = 1 - (one_minus_z / scale_factor)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32)
    timesteps = sigmas * c["num_train_timesteps"]
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    return mu, sigmas, timesteps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    cases = []
    # image_seq_len = (H / 16) * (W / 16): 1328x1328 (Qwen-Image's 1:1), 1664x928, 512x512, 256x256.
    # (1 step is left out: its one sigma is 1, and the stretch divides 0 by 0 -- NaN in diffusers.)
    for steps, seq in [(50, 83 * 83), (50, 104 * 58), (30, 32 * 32), (8, 16 * 16), (2, 64 * 64)]:
        mu, sigmas, timesteps = schedule(QWEN_SCHEDULER, steps, seq)
        cases.append({"steps": steps, "image_seq_len": seq, "mu": mu, "sigmas": [float(s) for s in sigmas],
                      "timesteps": [float(t) for t in timesteps]})
    with open(out, "w") as f:
        json.dump({"config": QWEN_SCHEDULER, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
