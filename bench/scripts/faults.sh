#!/usr/bin/env bash
# Measures the gateway under the faults of production, with default
# settings, each beside the hand-written floor in the same run:
#   (1) hang: 200 connections to routes whose upstreams never answer in
#       time, 200ms route deadline: the share of answers within 205ms;
#   (2) the same with a CPU hog (two busy loops) beside it;
#   (3) overload: fanout2's closed-loop maximum, then the open loop at half
#       of it (unloaded latency) and at twice it (admitted and refused
#       latency apart).
# Reports go to bench-out/faults/.
#
#   bash bench/scripts/faults.sh
#   DURATION=20s bash bench/scripts/faults.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
OUT="${OUT:-bench-out/faults}"
mkdir -p "$OUT"
bin=$(mktemp -d)
trap 'rm -rf "$bin"; kill $(jobs -p) 2>/dev/null || true' EXIT
go build -o "$bin/lariat" ./cmd/lariat
go build -o "$bin/lariat-bench" ./cmd/lariat-bench
run() { "$bin/lariat-bench" scenario "$@" --lariat-bin "$bin/lariat" --bench-bin "$bin/lariat-bench" --quiet; }

echo "== (1) hang, 200 connections, idle machine"
run hang --connections 200 --duration "$DURATION" --deadline-margin 5ms --out "$OUT/hang"

echo "== (2) hang, 200 connections, two busy loops beside"
for i in 1 2; do (while :; do :; done) & done
run hang --connections 200 --duration "$DURATION" --deadline-margin 5ms --out "$OUT/hang-hog"
kill $(jobs -p) 2>/dev/null || true
wait 2>/dev/null || true

echo "== (3) overload: closed-loop maximum"
max=$(run fanout2 --duration "$DURATION" --out "$OUT/max" | awk '/^lariat: /{l=1} l && /requests/{print $7; exit}')
echo "lariat closed-loop maximum: $max rps"
half=$(awk -v m="$max" 'BEGIN{printf "%d", m/2}')
double=$(awk -v m="$max" 'BEGIN{printf "%d", m*2}')
echo "== (3) open loop at half: $half rps"
run fanout2 --mode open --rate "$half" --duration "$DURATION" --out "$OUT/half"
echo "== (3) open loop at twice: $double rps"
run fanout2 --mode open --rate "$double" --duration "$DURATION" --out "$OUT/double"
