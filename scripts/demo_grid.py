#!/usr/bin/env python3
"""Draws docs/demo_shapes.png: a grid of prompts drawn by the demo model
(models/shapes-demo) on 2 ranks (Ulysses 2), one row per shape.

    python3 scripts/demo_grid.py [--spdit build/spdit] [--out docs/demo_shapes.png]

Reads each picture from `spdit run --dump` (the 'image' tensor, uint8) and
writes the PNG with zlib alone, so it needs nothing beyond Python itself.
"""
import argparse
import json
import os
import struct
import subprocess
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Row by row: each shape in four colour pairs; the first column holds the
# README's two commands' prompts and the tests' square.
GRID = [
    [("circle", "red", "blue"), ("circle", "green", "red"), ("circle", "white", "black"),
     ("circle", "yellow", "green")],
    [("triangle", "yellow", "green"), ("triangle", "black", "white"), ("triangle", "red", "yellow"),
     ("triangle", "blue", "white")],
    [("square", "blue", "yellow"), ("square", "white", "black"), ("square", "green", "blue"),
     ("square", "red", "black")],
]
GAP = 4  # white pixels between pictures


def dumped_image(path):
    """The (H, W, 3) uint8 'image' tensor of a safetensors file, as rows of bytes."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    info = header["image"]
    assert info["dtype"] == "U8", info
    _, h, w, c = info["shape"]
    begin, end = info["data_offsets"]
    raw = data[8 + n + begin:8 + n + end]
    return [raw[y * w * c:(y + 1) * w * c] for y in range(h)]


def write_png(path, rows, width):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in rows), 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spdit", default=os.path.join(ROOT, "build", "spdit"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "shapes-demo"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "demo_shapes.png"))
    ap.add_argument("--seed", default="42")
    a = ap.parse_args()
    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r, line in enumerate(GRID):
            pictures = []
            for shape, colour, background in line:
                dump = os.path.join(tmp, "dump.safetensors")
                prompt = f"a {colour} {shape} on a {background} background"
                subprocess.run([a.spdit, "run", "--model-dir", a.model_dir, "--prompt", prompt,
                                "--seed", a.seed, "--nproc", "2", "--ulysses", "2", "--check",
                                "--dump", dump], check=True, stdout=subprocess.DEVNULL)
                pictures.append(dumped_image(dump))
                print(prompt)
            h = len(pictures[0])
            gap = b"\xff" * 3 * GAP
            if r:
                out_rows += [b"\xff" * len(out_rows[0])] * GAP
            out_rows += [gap.join(p[y] for p in pictures) for y in range(h)]
    write_png(a.out, out_rows, len(out_rows[0]) // 3)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
