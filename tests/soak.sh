#!/usr/bin/env bash
# Soak: consecutive 4-rank `spdit run --check` jobs over varied models, sizes
# and degrees (default 200). Each must pass parity, and after each no rank
# process and no bound rendezvous port may remain. Usage: tests/soak.sh SPDIT [JOBS]
set -uo pipefail
spdit="$1"
jobs="${2:-${SPDIT_SOAK_JOBS:-200}}"
models=(flux wan qwen-image)
layouts=("4 1" "2 2" "1 4")
sizes=("64 64" "48 80" "112 144" "96 96" "32 176")
# Rendezvous ports from below the kernel's ephemeral range: a port in it can
# still be held by a TIME_WAIT socket of an earlier job's Gloo connections,
# which makes rank 0's bind fail with EADDRINUSE though nothing listens on it.
ephemeral_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
port_span=8000; port_base=$((ephemeral_lo - port_span))
[ $port_base -ge 1024 ] || { port_base=1024; port_span=$((ephemeral_lo - 1024)); }
passed=0; failed=0
start=$(date +%s)
for ((i = 0; i < jobs; i++)); do
  m=${models[i % 3]}
  read -r u r <<<"${layouts[(i / 3) % 3]}"
  read -r h w <<<"${sizes[(i / 9) % 5]}"
  port=$((port_base + (i * 7 + $$) % port_span))
  marker="--seed $((700000 + i))"
  out=$(timeout 120 "$spdit" launch --nproc 4 --master-port "$port" --timeout 30 -- \
        "$spdit" run --model "$m" --preset tiny --height "$h" --width "$w" --steps 1 --text-len 5 \
        --ulysses "$u" --ring "$r" --check $marker 2>&1)
  rc=$?
  leftover=$(pgrep -f -- "$marker\$" || true)
  port_busy=$( (ss -ltn 2>/dev/null || true) | grep -c ":$port " || true)
  if [ $rc -eq 0 ] && grep -q "parity: .* PASS" <<<"$out" && [ -z "$leftover" ] && [ "$port_busy" = 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "soak job $i FAILED (model $m, ${h}x${w}, U=$u R=$r, rc=$rc, leftover='$leftover', port busy=$port_busy):"
    echo "$out" | tail -20
  fi
done
echo "soak: $jobs jobs in $(( $(date +%s) - start )) s"
echo "soak: $passed passed, $failed failed"
[ $failed -eq 0 ]
