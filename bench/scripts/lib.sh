# Steps the wrk scripts of this folder share: installing tools, a
# temporary folder whose processes stop at exit, free ports, the two fake
# models and the fanout2 route over them, and Lariat started on them.
# Sourced by each script before it changes to the repository root:
#
#   . "$(dirname "$0")/lib.sh"
#
# It only defines functions (and the arrays start_lariat fills); they run
# from the repository root and use the temporary folder make_tmp makes.
#
# Settings read: MODEL_LATENCY and MODEL_JITTER (the fake models' answer
# delay and its jitter).

# need COMMAND PACKAGE installs PACKAGE with apt-get when COMMAND is missing.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "== installing $2"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  fi
}

# make_tmp makes the temporary folder $tmp; at exit, the processes whose
# ids are in $pids are stopped and $tmp is removed.
make_tmp() {
  tmp="$(mktemp -d)"
  pids=()
  trap cleanup EXIT
}

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}

# free_port prints a 127.0.0.1 port nothing listens on, below the
# kernel's range of ephemeral ports: a port in it may be the local end of
# one of the many connections a run opens, and a server binding it then
# fails with "address already in use".
free_port() {
  local p low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % (low - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# wait_port waits until something listens on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
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

# start_model NAME PORT BODY starts a fake model ($tmp/lariat-bench
# upstream) answering BODY on 127.0.0.1:PORT.
start_model() {
  "$tmp/lariat-bench" upstream --listen "127.0.0.1:$2" --latency "$MODEL_LATENCY" --jitter "$MODEL_JITTER" \
    --body "$3" >"$tmp/$1.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$2/-/healthz"
}

# start_models starts the fake models m1 and m2 of the fanout2 route,
# setting their ports p1 and p2 and m1's process id pid_m1.
start_models() {
  p1="$(free_port)"
  start_model m1 "$p1" '{"score":0.734,"model":"m1","version":"3"}'
  pid_m1="${pids[-1]}"
  p2="$(free_port)"
  start_model m2 "$p2" '{"score":0.291,"model":"m2","version":"8","labels":["a","b"]}'
}

# write_fanout2_route writes $tmp/routes/fanout2.yaml: POST /v1/fanout2
# calls m1 and m2 in parallel with the request and merges their answers.
write_fanout2_route() {
  mkdir -p "$tmp/routes"
  cat >"$tmp/routes/fanout2.yaml" <<EOF
apiVersion: v1
name: fanout2
endpoint: /v1/fanout2
timeout: 1s
tasks:
  m1:
    type: http
    inputs: {address: http://127.0.0.1:$p1/predict, body: '{{ .request }}'}
    output: {path: response.body.m1}
  m2:
    type: http
    inputs: {address: http://127.0.0.1:$p2/predict, body: '{{ .request }}'}
    output: {path: response.body.m2}
EOF
}

# start_lariat NAME BINARY [FLAGS...] serves the routes of $tmp/routes with
# BINARY and the flags given, setting lariat_port[NAME], lariat_admin[NAME]
# (the admin port) and lariat_pid[NAME].
declare -A lariat_port lariat_admin lariat_pid
start_lariat() {
  local pl pa name="$1" bin="$2"
  shift 2
  pl="$(free_port)"
  pa="$(free_port)"
  "$bin" serve --routes "$tmp/routes" --listen "127.0.0.1:$pl" --admin-listen "127.0.0.1:$pa" \
    "$@" >"$tmp/lariat-$name.log" 2>&1 &
  pids+=($!)
  lariat_pid[$name]=$!
  lariat_port[$name]=$pl
  lariat_admin[$name]=$pa
  wait_http "http://127.0.0.1:$pa/readyz"
}
