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
passed=0; failed=0
start=$(date +%s)
for ((i = 0; i < jobs; i++)); do
  m=${models[i % 3]}
  read -r u r <<<"${layouts[(i / 3) % 3]}"
  read -r h w <<<"${sizes[(i / 9) % 5]}"
  port=$((30000 + (i * 7 + $$) % 20000))
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
