#!/usr/bin/env bash
# Registry: cost of one endpoint change (validate, update the segment,
# publish the snapshot, notify subscribers) in registries of 1k, 10k and 100k
# endpoints (10 per service), beside the naive baseline that copies the whole
# endpoint table to publish a snapshot, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'ApplyOneEndpoint|NaiveRebuild' -benchtime 3000x ./registry)
echo "$out" | grep -E '^Benchmark'
echo "$out" | awk '
  /^BenchmarkApplyOneEndpoint\/endpoints=/ { split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); ours[a[2]] = $3 }
  /^BenchmarkNaiveRebuild\/endpoints=/     { split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); base[a[2]] = $3 }
  END {
    for (n in ours) printf "registry size %6d endpoints: one change %8.1f us, naive rebuild %9.1f us, %7.1fx faster\n", n, ours[n]/1000, base[n]/1000, base[n]/ours[n]
    printf "growth from 1k to 100k endpoints: ours %.2fx, naive %.1fx (target: ours ~1x, well under 10 ms)\n", ours[100000]/ours[1000], base[100000]/base[1000]
  }'
