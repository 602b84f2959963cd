#!/usr/bin/env bash
# Locality engine: time to compute every assignment of 1,000 services for
# 50 client localities (100,000 endpoints in 50 localities, a label-priority
# failover policy and a residency rule), in full and after one endpoint
# change through the incremental path (Table.Update with the registry's
# Delta), measured in the same run and printed as a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
full=$(go test -run '^$' -bench 'EngineFull$' -benchtime 5x -benchmem ./locality)
incr=$(go test -run '^$' -bench 'EngineIncremental$' -benchtime 2000x -benchmem ./locality)
printf '%s\n%s\n' "$full" "$incr" | grep -E '^Benchmark'
printf '%s\n%s\n' "$full" "$incr" | awk '
  /^BenchmarkEngineFull/        { full = $3; fullb = $5 }
  /^BenchmarkEngineIncremental/ { incr = $3; incrb = $5 }
  END {
    printf "full build (1,000 services x 50 client localities): %8.1f ms, %6.1f MB allocated\n", full/1e6, fullb/1e6
    printf "one endpoint change, incremental:                   %8.3f ms, %6.3f MB allocated\n", incr/1e6, incrb/1e6
    printf "incremental is %.0fx faster than a full build (target: recompute only the touched service, ~1000x)\n", full/incr
  }'
