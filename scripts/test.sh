#!/usr/bin/env bash
# The test command: installs the servers the tests need when they are
# missing, checks formatting and vet, runs every test (the tests start and
# stop their own redis-server and PostgreSQL on 127.0.0.1), then runs each
# fuzz target for a bounded time.
#
#   bash scripts/test.sh              # everything
#   FUZZTIME=0 bash scripts/test.sh   # skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${FUZZTIME:-15s}"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The tests start their own servers; stop any the package started.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -shuffle=on -timeout 20m ./...

echo "== go test -race (core packages)"
go test -count=1 -race -timeout 20m ./config/... ./tasks/... ./router/... ./gateway/...

if [ "$FUZZTIME" != "0" ]; then
  echo "== fuzzing, $FUZZTIME per target"
  # Every Fuzz function, found in the sources, runs alone for FUZZTIME.
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
    pkg="./$(dirname "${file#./}")"
    for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
      echo "-- $pkg $target"
      if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
        echo "$out" | tail -n 40
        exit 1
      fi
      echo "$out" | tail -n 1
    done
  done
fi
echo "== all tests passed"
