#!/usr/bin/env bash
# Runs every Go fuzz target in the repo for FUZZTIME (default 10s) each.
set -euo pipefail
FUZZTIME=${FUZZTIME:-10s}
n=0
while IFS=: read -r file name; do
  dir=./$(dirname "$file")
  echo "fuzz: $dir $name ($FUZZTIME)"
  go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
  tail -n 1 /tmp/fuzz.$$.log
  n=$((n+1))
done < <(grep -rhoP --include='*_test.go' '^func \KFuzz\w+' --with-filename . | grep -v '/vendor/' | sed 's/^\.\///' | sort -u)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $n targets, $FUZZTIME each, no crash"
