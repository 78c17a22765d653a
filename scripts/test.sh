#!/usr/bin/env bash
# The test command: installs the servers (and the headless browser) the
# tests need when they are missing, checks formatting, vet and that go.mod is tidy, then runs every
# test (the tests start and stop their own redis-server and PostgreSQL on
# 127.0.0.1), the race tests of the core packages, and every fuzz target's
# seed corpus (testdata/fuzz). It is deterministic: no random fuzzing (that
# is scripts/fuzz.sh) and a fixed test order.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# stage prints a stage's name and the seconds spent so far.
stage() { echo "== $* ($(( $(date +%s) - start ))s)"; }

# A fixed shuffle seed: tests run in an order that does not follow the
# source, but the same order every time.
SHUFFLE=20261202

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Headless Chromium renders the admin page in the gateway's browser test.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
export LARIAT_TEST_CHROMIUM=required
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The tests start their own servers; stop any the package started.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi

stage "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

stage "go vet"
go vet ./...

stage "go mod tidy"
if ! go mod tidy -diff; then
  echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1
fi

stage "go build (the binaries the tests run)"
# Built once here instead of in each test package that runs them (see
# internal/testbin).
LARIAT_TEST_BIN=$(mktemp -d)
trap 'rm -rf "$LARIAT_TEST_BIN"' EXIT
export LARIAT_TEST_BIN
go build -o "$LARIAT_TEST_BIN/" ./cmd/...

stage "go test"
go test -count=1 -shuffle=$SHUFFLE -timeout 20m ./...

stage "go test -race (core packages)"
go test -count=1 -race -shuffle=$SHUFFLE -timeout 20m ./config/... ./featurefetch/... ./upstream/... ./tasks/... ./router/... ./graph/... ./gateway/...

echo "== all tests passed in $(( $(date +%s) - start ))s"
