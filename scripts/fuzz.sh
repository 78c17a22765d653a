#!/usr/bin/env bash
# The fuzz command: runs every fuzz target alone for a bounded time and
# reports each failure with the input that caused it. It is kept apart
# from the test command, whose result must not depend on chance.
#
#   bash scripts/fuzz.sh          # 30s per target
#   bash scripts/fuzz.sh 2m       # 2m per target
#
# An input found here lands in the package's testdata/fuzz/<Target>/: fix
# the code, then commit the file, and the test command replays it as a
# seed from then on.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME="${1:-${FUZZTIME:-30s}}"
failed=0
while read -r file; do
  pkg="./$(dirname "${file#./}")"
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "-- $pkg $target ($FUZZTIME)"
    before=$(ls "$pkg/testdata/fuzz/$target" 2>/dev/null | sort)
    if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
      echo "$out" | grep -E '^(ok|PASS|fuzz: elapsed)' | tail -n 1
      continue
    fi
    failed=$((failed + 1))
    echo "$out" | tail -n 40
    after=$(ls "$pkg/testdata/fuzz/$target" 2>/dev/null | sort)
    for new in $(comm -13 <(echo "$before") <(echo "$after")); do
      echo "   failing input $pkg/testdata/fuzz/$target/$new:"
      sed 's/^/     /' "$pkg/testdata/fuzz/$target/$new"
    done
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | sort)

if [ "$failed" -gt 0 ]; then
  echo "== $failed fuzz target(s) failed; fix the code, then commit the inputs above as seeds"
  exit 1
fi
echo "== every fuzz target ran $FUZZTIME without a failure"
