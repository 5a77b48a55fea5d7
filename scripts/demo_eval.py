#!/usr/bin/env python3
"""How many of the demo vocabulary's 90 prompts a demo folder draws right:
each prompt through `spdit run --model-dir DIR --nproc 1 --dump`, its picture
read as the tests' read_shape_picture reads it (src/pipelines/shapes_data.cpp:
nearest palette colour; background = commonest border colour; shape colour =
commonest other one; shape by the fill of its bounding box: square > 0.9,
circle > 0.64, else triangle).

    /usr/bin/python3 scripts/demo_eval.py [--spdit build/spdit] [--model-dir models/shapes-demo] [--seeds 42]
        [--run-args "--cfg-scale 1"]   # more `spdit run` flags (default: the folder's own settings)

Prints the fraction right per measure, per shape, and the misread prompts.
Needs Debian's python3-torch (for the distances), as scripts/reference/ does.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_grid import ROOT, dumped_image  # noqa: E402

SHAPES = ["circle", "square", "triangle"]
COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
PALETTE = torch.tensor([[220, 30, 30], [30, 170, 50], [30, 70, 220], [240, 220, 40],
                        [245, 245, 245], [20, 20, 20]], dtype=torch.float)


def read(rows):
    """(shape, colour, background, area fraction, fill) of a picture's rows of RGB bytes."""
    px = torch.tensor([list(r) for r in rows], dtype=torch.float)
    h, w = px.shape[0], px.shape[1] // 3
    labels = torch.cdist(px.view(h * w, 3), PALETTE).argmin(1).view(h, w)
    border = torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    bg = int(torch.bincount(border, minlength=6).argmax())
    counts = torch.bincount(labels.flatten(), minlength=6)
    counts[bg] = 0
    if int(counts.max()) == 0:
        return None, None, COLOURS[bg], 0.0, 0.0, 0.0
    fg = int(counts.argmax())
    mask = labels.eq(fg)
    area = float(mask.sum())
    rows_in = torch.nonzero(mask.sum(1) >= 2).flatten()
    cols_in = torch.nonzero(mask.sum(0) >= 2).flatten()
    if len(rows_in) == 0 or len(cols_in) == 0:
        return None, COLOURS[fg], COLOURS[bg], area / (h * w), 0.0, 0.0
    box_h = float(rows_in.max() - rows_in.min() + 1)
    box_w = float(cols_in.max() - cols_in.min() + 1)
    fill = area / (box_h * box_w)
    shape = "square" if fill > 0.9 else "circle" if fill > 0.64 else "triangle"
    return shape, COLOURS[fg], COLOURS[bg], area / (h * w), fill, box_w / box_h


def strict(shape, fill, aspect):
    """Whether a picture read as `shape` also has its proportions: the drawn
    shapes are as wide as tall (a triangle's box too), and a circle fills
    pi/4 of its box. A lens or an oval reads as a circle by fill alone."""
    if not 0.8 < aspect < 1.25:
        return False
    return shape != "circle" or 0.72 < fill < 0.85


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spdit", default=os.path.join(ROOT, "build", "spdit"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "shapes-demo"))
    ap.add_argument("--seeds", default="42", help="comma-separated noise seeds")
    ap.add_argument("--run-args", default="", help="more `spdit run` flags, e.g. '--cfg-scale 1'")
    a = ap.parse_args()
    right = {"shape": 0, "colour": 0, "background": 0, "all": 0, "all, strict": 0}
    per_shape = {s: 0 for s in SHAPES}
    strict_per_shape = {s: 0 for s in SHAPES}
    misread, n = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "dump.safetensors")
        for seed in a.seeds.split(","):
            for shape in SHAPES:
                for colour in COLOURS:
                    for background in COLOURS:
                        if colour == background:
                            continue
                        prompt = f"a {colour} {shape} on a {background} background"
                        subprocess.run([a.spdit, "run", "--model-dir", a.model_dir, "--prompt",
                                        prompt, "--seed", seed, "--nproc", "1", "--dump", dump]
                                       + a.run_args.split(),
                                       check=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                        got = read(dumped_image(dump))
                        ok = [got[0] == shape, got[1] == colour, got[2] == background]
                        every = all(ok) and 0.04 < got[3] < 0.6
                        proportioned = every and strict(got[0], got[4], got[5])
                        for key, good in zip(right, ok + [every, proportioned]):
                            right[key] += good
                        per_shape[shape] += ok[0]
                        strict_per_shape[shape] += proportioned
                        if not proportioned:
                            misread.append(f"seed {seed}: {prompt}: read a {got[1]} {got[0]} on "
                                           f"{got[2]} (area {got[3]:.2f}, fill {got[4]:.2f}, "
                                           f"width/height {got[5]:.2f})")
                        n += 1
    for m in misread:
        print(m)
    print(f"{a.model_dir} {a.run_args}: {n} pictures; right: " +
          ", ".join(f"{k} {v / n:.0%}" for k, v in right.items()) + "; shape right per shape: " +
          ", ".join(f"{s} {v}/{n // 3}" for s, v in per_shape.items()) +
          "; strict per shape: " +
          ", ".join(f"{s} {v}/{n // 3}" for s, v in strict_per_shape.items()))


if __name__ == "__main__":
    main()
