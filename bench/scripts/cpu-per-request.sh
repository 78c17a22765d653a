#!/usr/bin/env bash
# Measures the CPU time each serving process spends per request, in one
# run, with wrk as the load (a generator outside the Go runtime, -t2 -c50
# POST) and the serving process's utime+stime from /proc/PID/stat read
# before and after each run:
#
#   direct      one fake model called directly
#   floor       the hand-written fasthttp floor doing fanout2
#               (lariat-bench floor --scenario fanout2)
#   fanout2     Lariat's fanout2 route: two fake models in parallel, merged
#   fanout2-pipelined  the same through a second Lariat started with
#               --upstream-pipeline HOST:PORT=1 for both models
#   feast-1x50  Lariat's POST /get-online-features, 1 entity x 50 features
#   feast-20x10 the same, 20 entities x 10 features
#   feat-20x10  a route with one feature task, 20 entities x 10 features
#               read from Redis
#   cache-20x10 the same task with cache_ttl: every read is a client-side
#               cache hit
#
# Every target runs once per round, rounds alternate, and the figures of
# each target are printed as the median and the range over the rounds.
# Then fanout2 through Lariat and through the floor runs in an open loop
# (lariat-bench run --mode open) at half of Lariat's median closed-loop
# rate, and the p99 latency of both is printed.
#
#   bash bench/scripts/cpu-per-request.sh
#   ROUNDS=5 DURATION=10s bash bench/scripts/cpu-per-request.sh
#   COMPARE_BIN=/tmp/lariat-old bash bench/scripts/cpu-per-request.sh
#
# Settings (environment): ROUNDS (3), DURATION (5s per target and round),
# THREADS (2), CONNECTIONS (50), OPEN_DURATION (10s), TARGETS (all of the
# above, space-separated; "open" for the open loop), MODEL_LATENCY (0s),
# LARIAT_BIN (a lariat binary instead of building one), COMPARE_BIN (a
# second lariat binary: its fanout2 and feature targets run beside the
# first one's, named with a "-B" suffix, in the same rounds; for A/B
# comparisons of a change), PROFILE (a directory: in the last round, a CPU
# profile of each target Lariat serves is written there as TARGET.pprof,
# for `go tool pprof`). wrk and redis-server are installed with apt-get
# when missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-50}"
OPEN_DURATION="${OPEN_DURATION:-10s}"
MODEL_LATENCY="${MODEL_LATENCY:-0s}"
MODEL_JITTER=0s
TARGETS="${TARGETS:-direct floor fanout2 fanout2-pipelined feast-1x50 feast-20x10 feat-20x10 cache-20x10 open}"
COMPARE_BIN="${COMPARE_BIN:-}"
PROFILE="${PROFILE:-}"

need wrk wrk
need redis-server redis-server
make_tmp

echo "== building lariat-bench, lariat-ingest and lariat"
go build -o "$tmp/lariat-bench" ./cmd/lariat-bench
go build -o "$tmp/lariat-ingest" ./cmd/lariat-ingest
if [ -n "${LARIAT_BIN:-}" ]; then
  cp "$LARIAT_BIN" "$tmp/lariat"
else
  go build -o "$tmp/lariat" ./cmd/lariat
fi

# cpu_ticks prints the utime+stime of PID in clock ticks.
cpu_ticks() {
  # Field 2 (comm) is in parentheses; count from after it.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
HZ="$(getconf CLK_TCK)"

# --- redis, seeded in Feast's layout -----------------------------------
rp="$(free_port)"
mkdir -p "$tmp/redis"
redis-server --port "$rp" --bind 127.0.0.1 --dir "$tmp/redis" --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_port "$rp"

types=(DOUBLE DOUBLE DOUBLE DOUBLE FLOAT FLOAT INT64 INT64 STRING BOOL)
{
  echo "project: lariat_bench"
  echo "entities:"
  echo "  - {name: entity_id, value_type: INT64}"
  echo "feature_views:"
  for view in narrow:10 wide:50; do
    echo "  - name: ${view%%:*}"
    echo "    entities: [entity_id]"
    echo "    features:"
    for i in $(seq 0 $((${view##*:} - 1))); do
      echo "      - {name: f$i, dtype: ${types[$((i % 10))]}}"
    done
  done
} >"$tmp/views.yaml"

# seed_csv VIEW NFEATURES writes rows for entities 1..1000.
seed_csv() {
  awk -v n="$2" 'BEGIN {
    srand(1)
    split("DOUBLE DOUBLE DOUBLE DOUBLE FLOAT FLOAT INT64 INT64 STRING BOOL", t, " ")
    printf "entity_id,event_timestamp"
    for (i = 0; i < n; i++) printf ",f%d", i
    printf "\n"
    for (id = 1; id <= 1000; id++) {
      printf "%d,2026-05-01T12:00:00Z", id
      for (i = 0; i < n; i++) {
        ty = t[i % 10 + 1]
        if (ty == "DOUBLE") printf ",%.3f", rand() * 1000
        else if (ty == "FLOAT") printf ",%.3f", int(rand() * 1000) / 8
        else if (ty == "INT64") printf ",%d", int(rand() * 1000000000)
        else if (ty == "STRING") printf ",tier-%d", int(rand() * 5)
        else printf ",%s", (rand() < 0.5 ? "true" : "false")
      }
      printf "\n"
    }
  }' >"$tmp/$1.csv"
  "$tmp/lariat-ingest" load --views "$tmp/views.yaml" --view "$1" --redis "127.0.0.1:$rp" --key-ttl none "$tmp/$1.csv" >"$tmp/ingest-$1.log" 2>&1
}
seed_csv narrow 10
seed_csv wide 50

# --- fake models and the floor -----------------------------------------
start_models

pf="$(free_port)"
"$tmp/lariat-bench" floor --scenario fanout2 --listen "127.0.0.1:$pf" \
  --model "m1=127.0.0.1:$p1" --model "m2=127.0.0.1:$p2" >"$tmp/floor.log" 2>&1 &
pids+=($!)
pid_floor=$!
wait_port "$pf"

# --- the gateway (and the one compared with it) ------------------------
ids="$(seq -s, 1 20)"
narrow="$(for i in $(seq 0 9); do printf '"narrow:f%d",' "$i"; done)"
narrow="${narrow%,}"
wide="$(for i in $(seq 0 49); do printf '"wide:f%d",' "$i"; done)"
wide="${wide%,}"
write_fanout2_route
for r in features:0s features-cached:60s; do
  cat >"$tmp/routes/${r%%:*}.yaml" <<EOF
apiVersion: v1
name: ${r%%:*}
endpoint: /v1/${r%%:*}
timeout: 1s
tasks:
  features:
    type: feature
    inputs:
      entities: {entity_id: '{{ .request.ids }}'}
      features: [${narrow//\"/}]
      cache_ttl: ${r##*:}
    output: {path: response.body}
EOF
done

feature_flags=(--feature-views "$tmp/views.yaml" --redis "127.0.0.1:$rp")
start_lariat A "$tmp/lariat" "${feature_flags[@]}"
if [[ " $TARGETS " == *" fanout2-pipelined "* ]]; then
  start_lariat P "$tmp/lariat" "${feature_flags[@]}" --upstream-pipeline "127.0.0.1:$p1=1" --upstream-pipeline "127.0.0.1:$p2=1"
fi
variants=(A)
if [ -n "$COMPARE_BIN" ]; then
  cp "$COMPARE_BIN" "$tmp/lariat-B"
  start_lariat B "$tmp/lariat-B" "${feature_flags[@]}"
  variants=(A B)
fi

# --- targets -----------------------------------------------------------
body_fanout='{"request_id":1,"user":{"id":"u42","country":"DE"},"items":[17,256,981]}'
declare -A t_url t_pid t_body t_admin
add_target() { # name url pid body [admin port, when Lariat serves it]
  t_url[$1]="$2"
  t_pid[$1]="$3"
  t_body[$1]="$4"
  t_admin[$1]="${5:-}"
}
order=()
for t in $TARGETS; do
  case "$t" in
  direct)
    add_target direct "http://127.0.0.1:$p1/predict" "$pid_m1" "$body_fanout"
    order+=(direct)
    ;;
  floor)
    add_target floor "http://127.0.0.1:$pf/" "$pid_floor" "$body_fanout"
    order+=(floor)
    ;;
  fanout2-pipelined)
    add_target "$t" "http://127.0.0.1:${lariat_port[P]}/v1/fanout2" "${lariat_pid[P]}" "$body_fanout" "${lariat_admin[P]}"
    order+=("$t")
    ;;
  fanout2 | feast-1x50 | feast-20x10 | feat-20x10 | cache-20x10)
    for v in "${variants[@]}"; do
      name="$t"
      [ "$v" = A ] || name="$t-$v"
      base="http://127.0.0.1:${lariat_port[$v]}"
      case "$t" in
      fanout2) add_target "$name" "$base/v1/fanout2" "${lariat_pid[$v]}" "$body_fanout" "${lariat_admin[$v]}" ;;
      feast-1x50) add_target "$name" "$base/get-online-features" "${lariat_pid[$v]}" \
        "{\"features\":[$wide],\"entities\":{\"entity_id\":[7]}}" "${lariat_admin[$v]}" ;;
      feast-20x10) add_target "$name" "$base/get-online-features" "${lariat_pid[$v]}" \
        "{\"features\":[$narrow],\"entities\":{\"entity_id\":[$ids]}}" "${lariat_admin[$v]}" ;;
      feat-20x10) add_target "$name" "$base/v1/features" "${lariat_pid[$v]}" "{\"ids\":[$ids]}" "${lariat_admin[$v]}" ;;
      cache-20x10) add_target "$name" "$base/v1/features-cached" "${lariat_pid[$v]}" "{\"ids\":[$ids]}" "${lariat_admin[$v]}" ;;
      esac
      order+=("$name")
    done
    ;;
  open) ;;
  *)
    echo "unknown target $t" >&2
    exit 2
    ;;
  esac
done

# Check every target answers 200 before the load.
for t in "${order[@]}"; do
  code="$(curl -s -o "$tmp/check.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary "${t_body[$t]}" "${t_url[$t]}")"
  if [ "$code" != 200 ]; then
    echo "$t: ${t_url[$t]} answered $code: $(head -c 300 "$tmp/check.out")" >&2
    exit 1
  fi
done

results="$tmp/results.tsv"
: >"$results"
# run_wrk TARGET ROUND runs wrk once and appends "target rate us_per_req round".
run_wrk() {
  local t="$1" lua="$tmp/post-$1.lua" out before after reqs rate
  body="${t_body[$t]//\\/\\\\}"
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$body" >"$lua"
  local prof=""
  if [ -n "$PROFILE" ] && [ -n "${t_admin[$t]}" ] && [ "$2" = "$ROUNDS" ]; then
    mkdir -p "$PROFILE"
    curl -fsS -o "$PROFILE/$t.pprof" "http://127.0.0.1:${t_admin[$t]}/debug/pprof/profile?seconds=$((${DURATION%s} - 1))" &
    prof=$!
  fi
  before="$(cpu_ticks "${t_pid[$t]}")"
  out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$lua" "${t_url[$t]}")"
  after="$(cpu_ticks "${t_pid[$t]}")"
  [ -z "$prof" ] || wait "$prof"
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "$t: errors during the run:" >&2
    echo "$out" >&2
    exit 1
  fi
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  rate="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  awk -v t="$t" -v r="$rate" -v n="$reqs" -v c="$((after - before))" -v hz="$HZ" -v round="$2" 'BEGIN {
    us = c / hz * 1e6 / n
    printf "  round %d %-18s %9.0f req/s %7.1f us CPU/request\n", round, t, r, us > "/dev/stderr"
    printf "%s\t%f\t%f\t%d\n", t, r, us, round
  }' >>"$results"
}

echo "== $ROUNDS rounds of wrk -t$THREADS -c$CONNECTIONS -d$DURATION per target ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
for round in $(seq 1 "$ROUNDS"); do
  for t in "${order[@]}"; do
    run_wrk "$t" "$round"
  done
done

# stats prints the median and [min-max] of the numbers on stdin, one a
# line, with format FMT.
stats() {
  sort -g | awk -v f="$1" '{a[NR] = $1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf f " [" f "-" f "]", m, a[1], a[NR]
  }'
}

echo "== closed loop (wrk): median [min-max] over $ROUNDS rounds"
declare -A med_rate
for t in "${order[@]}"; do
  med_rate[$t]="$(awk -v t="$t" '$1 == t {print $2}' "$results" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')"
  printf "%-18s %s req/s   %s us CPU/request\n" "$t" \
    "$(awk -v t="$t" '$1 == t {print $2}' "$results" | stats "%.0f")" \
    "$(awk -v t="$t" '$1 == t {print $3}' "$results" | stats "%.1f")"
done

# ratio LABEL COLUMN A B prints the median [min-max] over the rounds of
# A / B in the same round (column 2: req/s, 3: CPU per request), which
# leaves out most of the machine's load changes between rounds.
ratio() {
  [ -n "${med_rate[$3]:-}" ] && [ -n "${med_rate[$4]:-}" ] || return 0
  printf "%-44s %s\n" "$1" "$(awk -v c="$2" -v a="$3" -v b="$4" '
    $1 == a {x[$4] = $c} $1 == b {y[$4] = $c}
    END {for (r in x) if (r in y && y[r] > 0) print x[r] / y[r]}' "$results" | stats "%.2f")"
}
echo "== ratios in the same round: median [min-max] over $ROUNDS rounds"
ratio "CPU/request fanout2 / direct" 3 fanout2 direct
ratio "CPU/request fanout2 / floor" 3 fanout2 floor
ratio "req/s fanout2 / floor" 2 fanout2 floor
ratio "CPU/request fanout2-pipelined / direct" 3 fanout2-pipelined direct
ratio "CPU/request fanout2-pipelined / floor" 3 fanout2-pipelined floor
ratio "CPU/request fanout2-pipelined / fanout2" 3 fanout2-pipelined fanout2
ratio "req/s fanout2-pipelined / floor" 2 fanout2-pipelined floor
ratio "CPU/request feast 20x10 / feast 1x50" 3 feast-20x10 feast-1x50
ratio "CPU/request cache hit / Redis (20x10 task)" 3 cache-20x10 feat-20x10
if [ -n "$COMPARE_BIN" ]; then
  for t in fanout2 feast-1x50 feast-20x10 feat-20x10 cache-20x10; do
    ratio "CPU/request $t A / B" 3 "$t" "$t-B"
  done
fi

# --- open loop at half of Lariat's closed-loop rate --------------------
if [[ " $TARGETS " == *" open "* ]] && [ -n "${med_rate[fanout2]:-}" ]; then
  rate="$(awk -v r="${med_rate[fanout2]}" 'BEGIN {printf "%d", r / 2}')"
  conns=$((rate / 10 > CONNECTIONS ? rate / 10 : CONNECTIONS))
  echo "== open loop: lariat-bench run --mode open --rate $rate --connections $conns --duration $OPEN_DURATION"
  for t in floor fanout2 fanout2-pipelined; do
    [ -n "${t_pid[$t]:-}" ] || continue
    before="$(cpu_ticks "${t_pid[$t]}")"
    "$tmp/lariat-bench" run --quiet --name "$t" --url "${t_url[$t]}" --method POST --body "${t_body[$t]}" \
      --mode open --rate "$rate" --connections "$conns" --duration "$OPEN_DURATION" --json "$tmp/open-$t.json" >/dev/null
    after="$(cpu_ticks "${t_pid[$t]}")"
    python3 - "$tmp/open-$t.json" "$t" "$((after - before))" "$HZ" <<'EOF' 2>/dev/null ||
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
cpu = int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / max(r["requests"], 1)
print(f'{sys.argv[2]:<14} {r["throughput_rps"]:9.0f} req/s  p50 {r["latency"]["p50_ms"]:.2f} ms  p99 {r["latency"]["p99_ms"]:.2f} ms  '
      f'service p99 {r["service_time"]["p99_ms"]:.2f} ms  {cpu:.1f} us CPU/request')
e = r["errors"]
if e["total"]:
    print(f'{"":<14} errors {e["total"]}: status {e["status"]} {r.get("status_codes", {})}, timeout {e["timeout"]}, '
          f'connection {e["connection"]}, other {e["other"]}')
EOF
      echo "$t: see $tmp/open-$t.json"
  done
fi
