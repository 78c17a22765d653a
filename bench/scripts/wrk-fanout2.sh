#!/usr/bin/env bash
# Measures with wrk (a generator outside the Go runtime):
#   (a) one fake model server called directly;
#   (b) the gateway's fanout2 route, calling two such servers in parallel
#       and merging their answers;
# and prints both request rates and their ratio. The fake models and the
# gateway run as separate processes on 127.0.0.1.
#
#   bash bench/scripts/wrk-fanout2.sh
#   MODEL_LATENCY=1ms MODEL_JITTER=500us DURATION=30s bash bench/scripts/wrk-fanout2.sh
#
# Settings (environment): THREADS (2), CONNECTIONS (50), DURATION (10s),
# MODEL_LATENCY (0s), MODEL_JITTER (0s). wrk is installed with apt-get when
# missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
DURATION="${DURATION:-10s}"
MODEL_LATENCY="${MODEL_LATENCY:-0s}"
MODEL_JITTER="${MODEL_JITTER:-0s}"

need wrk wrk
make_tmp

echo "== building lariat-bench and lariat"
go build -o "$tmp/lariat-bench" ./cmd/lariat-bench
go build -o "$tmp/lariat" ./cmd/lariat

start_models
write_fanout2_route
start_lariat A "$tmp/lariat"
pl="${lariat_port[A]}"

cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"request_id":1,"user":{"id":"u42","country":"DE"},"items":[17,256,981]}'
wrk.headers["Content-Type"] = "application/json"
EOF

# run_wrk NAME URL prints wrk's output and sets RATE.
run_wrk() {
  echo "== $1: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $2"
  local out
  out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$tmp/post.lua" "$2")"
  echo "$out"
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$1: some answers were not 2xx" >&2
    exit 1
  fi
  RATE="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
}

curl -sf -X POST -H 'Content-Type: application/json' -d '{"items":[1]}' "http://127.0.0.1:$pl/v1/fanout2" >/dev/null
run_wrk "direct: one fake model" "http://127.0.0.1:$p1/predict"
direct="$RATE"
run_wrk "lariat: fanout2 over two fake models" "http://127.0.0.1:$pl/v1/fanout2"
lariat="$RATE"

echo "== results ($(nproc) CPUs, model latency $MODEL_LATENCY ± $MODEL_JITTER)"
awk -v d="$direct" -v l="$lariat" 'BEGIN {
  printf "direct (one model)     %10.0f requests/s\n", d
  printf "lariat (fanout2)       %10.0f requests/s\n", l
  printf "ratio lariat / direct  %10.3f\n", l / d
}'
