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
cd "$(dirname "$0")/../.."

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
DURATION="${DURATION:-10s}"
MODEL_LATENCY="${MODEL_LATENCY:-0s}"
MODEL_JITTER="${MODEL_JITTER:-0s}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "== installing wrk"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building lariat-bench and lariat"
go build -o "$tmp/lariat-bench" ./cmd/lariat-bench
go build -o "$tmp/lariat" ./cmd/lariat

# free_port prints a 127.0.0.1 port nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# wait_http waits until URL answers 200.
wait_http() {
  for _ in $(seq 1 200); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not come up; logs:" >&2
  tail -n 20 "$tmp"/*.log >&2
  return 1
}

start_model() { # name port body
  "$tmp/lariat-bench" upstream --listen "127.0.0.1:$2" --latency "$MODEL_LATENCY" --jitter "$MODEL_JITTER" \
    --body "$3" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$2/-/healthz"
}

p1="$(free_port)"
start_model m1 "$p1" '{"score":0.734,"model":"m1","version":"3"}'
p2="$(free_port)"
start_model m2 "$p2" '{"score":0.291,"model":"m2","version":"8","labels":["a","b"]}'

mkdir -p "$tmp/routes"
cat >"$tmp/routes/fanout2.yaml" <<EOF
apiVersion: v1
name: fanout2
endpoint: /v1/fanout2
timeout: 1s
tasks:
  m1:
    type: http
    inputs:
      address: http://127.0.0.1:$p1/predict
      body: '{{ .request }}'
    output: {path: response.body.m1}
  m2:
    type: http
    inputs:
      address: http://127.0.0.1:$p2/predict
      body: '{{ .request }}'
    output: {path: response.body.m2}
EOF
pl="$(free_port)"
pa="$(free_port)"
"$tmp/lariat" serve --routes "$tmp/routes" --listen "127.0.0.1:$pl" --admin-listen "127.0.0.1:$pa" >"$tmp/lariat.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$pa/readyz"

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
