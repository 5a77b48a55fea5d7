#!/usr/bin/env bash
# Two "machines" on this one: network namespaces joined by a veth pair, two
# ranks in each, MASTER_ADDR on the first. The job must pass its parity check.
# Exits 77 (CTest: skipped) with a message where namespaces cannot be made.
set -uo pipefail
spdit="$1"
a="spditA$$"; b="spditB$$"; va="spva$$"; vb="spvb$$"
if ! command -v ip >/dev/null 2>&1 || ! ip netns add "$a" 2>/dev/null; then
  echo "SKIPPED: cannot create network namespaces here (needs root and iproute2)"
  exit 77
fi
cleanup() { ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null; }
trap cleanup EXIT
set -e
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
ip -n "$a" addr add 10.231.7.1/24 dev "$va"
ip -n "$b" addr add 10.231.7.2/24 dev "$vb"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$va" up
ip -n "$b" link set "$vb" up
port=$((20000 + $$ % 20000))
job=(run --model flux --preset tiny --height 112 --width 144 --steps 2 --ulysses 2 --ring 2 --check)
out=$(mktemp)
set +e
ip netns exec "$a" env GLOO_SOCKET_IFNAME="$va" "$spdit" launch --nproc 2 --nnodes 2 --node-rank 0 \
  --master-addr 10.231.7.1 --master-port "$port" --timeout 60 -- "$spdit" "${job[@]}" >"$out" 2>&1 &
pa=$!
ip netns exec "$b" env GLOO_SOCKET_IFNAME="$vb" "$spdit" launch --nproc 2 --nnodes 2 --node-rank 1 \
  --master-addr 10.231.7.1 --master-port "$port" --timeout 60 -- "$spdit" "${job[@]}" >>"$out" 2>&1
rb=$?
wait "$pa"
ra=$?
cat "$out"
grep -q "parity: .* PASS" "$out" && [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]
status=$?
rm -f "$out"
[ $status -eq 0 ] && echo "two hosts: 1 passed, 0 failed" || echo "two hosts: 0 passed, 1 failed"
exit $status
