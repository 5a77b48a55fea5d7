#!/usr/bin/env bash
# Draws docs/perf_attention.png and docs/perf_scaling.png from the JSON that
# `spdit bench attention|scaling --json` wrote into docs/bench/.
# Needs python3 and gnuplot (apt-get install gnuplot-nox).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$root/docs/bench" "$tmp" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
a = json.load(open(f"{src}/attention.json"))
with open(f"{out}/attention.dat", "w") as f:
    for c in sorted(a["cases"], key=lambda c: c["seq"]):
        if c["head_dim"] != 64: continue
        sdpa = c.get("libtorch_sdpa", {}).get("gflops", float("nan"))
        f.write(f'{c["seq"]} {c["fp32"]["gflops"]} {sdpa} {a["sgemm"]["gflops"]} '
                f'{c["fp32"]["gemm_gflops_interleaved"]} {c["bf16"]["gflops"]} {c["bf16"]["gemm_gflops_interleaved"]}\n')
s = json.load(open(f"{src}/scaling.json"))
with open(f"{out}/scaling.dat", "w") as f:
    for c in s["configs"]:
        f.write(f'"{c["name"]}" {c["run"]["median_after_warmup_seconds"]}\n')
PY
gnuplot <<GP
set terminal pngcairo size 900,540 font ",11" noenhanced
set output "$root/docs/perf_attention.png"
set title "Local attention, 1 thread, H=8, d=64, fp32 and bf16 (spdit bench attention)"
set xlabel "sequence length S"
set ylabel "GFLOP/s (4*S*S*d*H per call)"
set logscale x 2
set yrange [0:*]
set key bottom right
set grid
plot "$tmp/attention.dat" using 1:2 with linespoints lw 2 title "spdit local_attention, fp32", \
     "" using 1:6 with linespoints lw 2 title "spdit local_attention, bf16", \
     "" using 1:3 with linespoints lw 2 title "LibTorch _scaled_dot_product_attention, fp32", \
     "" using 1:5 with linespoints dt 2 title "single-thread sgemm, beside each case", \
     "" using 1:7 with linespoints dt 2 title "single-thread bf16 GEMM (at::mm), beside each case", \
     "" using 1:(\$5*0.85) with linespoints dt 3 title "85% of sgemm beside (target)"
set output "$root/docs/perf_scaling.png"
set title "Flux small forward, 8192 image tokens (spdit bench scaling)"
unset logscale x
unset xlabel
set ylabel "seconds per forward (median)"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -15
plot "$tmp/scaling.dat" using 0:2:xtic(1) with boxes notitle, "" using 0:2:(sprintf("%.2f s", \$2)) with labels offset 0,1 notitle
GP
echo "wrote docs/perf_attention.png docs/perf_scaling.png"
