#!/usr/bin/env python3
"""Whether the demo model's frozen, random text encoders tell its prompts'
words apart: every prompt of the vocabulary through `spdit encode`, then, for
T5's sequence and CLIP's pooled vector, the share of their variance across
the 90 prompts that lies between the groups of one word (shape, colour,
background): 0 would mean the encoders cannot tell that word's values apart.

    /usr/bin/python3 scripts/demo_text_probe.py [--spdit build/spdit] [--model-dir models/shapes-demo]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_eval import COLOURS, SHAPES  # noqa: E402
from demo_grid import ROOT  # noqa: E402


def float_tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    out = {}
    for name, info in json.loads(data[8:8 + n]).items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=torch.float32).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spdit", default=os.path.join(ROOT, "build", "spdit"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "shapes-demo"))
    a = ap.parse_args()
    words = [(s, c, b) for s in SHAPES for c in COLOURS for b in COLOURS if c != b]
    t5, pooled = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "e.safetensors")
        for s, c, b in words:
            subprocess.run([a.spdit, "encode", "--model-dir", a.model_dir, "--prompt",
                            f"a {c} {s} on a {b} background", "--out", out], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            e = float_tensors(out)
            t5.append(e["prompt_embeds"].flatten())
            pooled.append(e["pooled_prompt_embeds"].flatten())
    for name, x in (("T5 sequence", torch.stack(t5)), ("CLIP pooled", torch.stack(pooled))):
        total = (x - x.mean(0)).pow(2).sum(1).mean()
        shares = []
        for i, word in enumerate(("shape", "colour", "background")):
            groups = {}
            for j, w in enumerate(words):
                groups.setdefault(w[i], []).append(j)
            between = sum(len(g) * (x[g].mean(0) - x.mean(0)).pow(2).sum()
                          for g in groups.values()) / len(words)
            shares.append(f"{word} {float(between / total):.0%}")
        print(f"{name}: variance between the groups of one word: " + ", ".join(shares))


if __name__ == "__main__":
    main()
