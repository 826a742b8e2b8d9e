#!/usr/bin/env bash
# Runs the benchmarks (release build) and prints one JSON object per line.
#
#   scripts/bench.sh                 # all of them
#   scripts/bench.sh replicate       # one (or several) by name
#
# Names: stream bn254 (Zellular side), verify verify_1core replicate coldstart
# queries probing detection (node side), abuse scale (real processes under load).
# See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(bn254 stream verify verify_1core replicate coldstart queries probing detection abuse scale)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do
  case "$n" in
    bn254|stream) cargo bench --quiet --bench zellular -- "$n" ;;
    verify_1core)
      # blst batch verification uses every core it may: pin to one for the 1-core figure.
      taskset -c 0 cargo bench --quiet --bench node -- verify | sed 's/"bench":"verify"/"bench":"verify_1core"/' ;;
    verify|replicate|coldstart|queries|probing|detection) cargo bench --quiet --bench node -- "$n" ;;
    abuse|scale) cargo bench --quiet --bench load -- "$n" ;;
    *) echo "bench.sh: unknown benchmark $n (known: ${all[*]})" >&2; exit 2 ;;
  esac
done 2>/dev/null | grep '^{'
