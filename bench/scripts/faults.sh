#!/usr/bin/env bash
# Measures the gateway under the faults of production, with default
# settings, each beside the hand-written floor in the same run:
#   (1) hang: 200 connections to routes whose upstreams never answer in
#       time, 200ms route deadline: the share of answers within 205ms;
#   (2) the same with a CPU hog (two busy loops) beside it, with the
#       breakers and limits off (hang) and as they come (hang-defaults);
#   (3) overload: fanout2's closed-loop maximum, then the open loop at half
#       of it (unloaded latency) and at twice it (admitted and refused
#       latency apart);
#   (4) a minimal server that answers every request after 200ms (the fake
#       model), 200 connections, idle and beside two busy loops: what (1)
#       and (2) compare with;
#   (5) a busy machine: four busy loops beside the gateway, one route
#       calling a 1ms model with a 20ms try timeout at 2000 requests/s:
#       the statuses, and whether the healthy model's breaker opened;
#   (6) a hang that lasts: (1) for 18s without warmup, past the point
#       where connections closed gracefully would use up the local ports
#       to the hung upstreams (about 14s here).
# Reports go to bench-out/faults/.
#
#   bash bench/scripts/faults.sh
#   DURATION=20s bash bench/scripts/faults.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
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
echo "== (2) hang with the default breakers and limits, two busy loops beside"
run hang-defaults --connections 200 --duration "$DURATION" --deadline-margin 5ms --out "$OUT/hang-defaults-hog"
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

echo "== (4) a minimal server answering after 200ms, 200 connections"
port=$(free_port)
"$bin/lariat-bench" upstream --listen "127.0.0.1:$port" --latency 200ms --jitter 0 >/dev/null 2>&1 &
minimal=$!
wait_port "$port"
minimal_run() { "$bin/lariat-bench" run --url "http://127.0.0.1:$port/" --method POST --body '{}' --connections 200 --duration "$DURATION" --deadline 205ms --quiet; }
minimal_run
echo "== (4) the same, two busy loops beside"
for i in 1 2; do (while :; do :; done) & done
busy=$(jobs -p | grep -v "^$minimal\$")
minimal_run
kill $busy 2>/dev/null || true
kill "$minimal" 2>/dev/null || true
wait 2>/dev/null || true

echo "== (5) four busy loops beside: a 1ms model, 20ms try timeout, 2000 requests/s"
model_port=$(free_port)
"$bin/lariat-bench" upstream --listen "127.0.0.1:$model_port" --latency 1ms --jitter 500us >/dev/null 2>&1 &
wait_port "$model_port"
routes=$(mktemp -d)
cat >"$routes/busy.yaml" <<YAML
name: busy
endpoint: /busy
timeout: 200ms
tasks:
  m:
    type: http
    inputs: {address: http://127.0.0.1:$model_port/score, timeout: 20ms}
    output: {path: response.body}
YAML
gw_port=$(free_port)
admin_port=$(free_port)
"$bin/lariat" serve --routes "$routes" --listen "127.0.0.1:$gw_port" --admin-listen "127.0.0.1:$admin_port" 2>/dev/null &
wait_port "$gw_port"
for i in 1 2 3 4; do (while :; do :; done) & done
"$bin/lariat-bench" run --url "http://127.0.0.1:$gw_port/busy" --method POST --body '{"a":1}' --mode open --rate 2000 \
  --connections 200 --duration "$DURATION" --quiet | grep -E "requests|status|latency"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -E 'lariat_breaker_state_changes_total|lariat_upstream_errors_total' || echo "no breaker change, no upstream error"
kill $(jobs -p) 2>/dev/null || true
wait 2>/dev/null || true
rm -rf "$routes"

echo "== (6) a hang that lasts: 18s"
run hang --connections 200 --duration 18s --no-warmup --deadline-margin 5ms --out "$OUT/hang-long"
