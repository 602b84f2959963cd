#!/usr/bin/env bash
# Kubernetes discovery: EndpointSlice write → registry change latency on a
# real kube-apiserver (N sequential writes, each one Update that moves one
# endpoint to a new address), beside the baseline measured in the same run
# for the same writes: when a bare client-go informer sees the event. The
# difference is what Meridian adds: its batch window, conversion and apply.
# Three windows: the default (20ms), 100ms (Istio's debounce) and none.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}
scripts/kube-apiserver.sh >/dev/null
out=$(go test -run '^$' -bench 'SliceWriteToRegistry' -benchtime "${N}x" -timeout 20m ./discovery/kube 2>/dev/null)
echo "$out" | grep -E '^Benchmark'
echo "$out" | awk -v n="$N" '
  /^BenchmarkSliceWriteToRegistry\/window=/ {
    for (i = 1; i < NF; i++) v[$(i+1)] = $i
    w = $1; sub(/^.*window=/, "", w); sub(/-[0-9]+$/, "", w)
    printf "window %-5s (%3.0f ms): slice write -> registry p50 %6.1f ms  p99 %6.1f ms | informer baseline p50 %5.1f ms  p99 %6.1f ms | ratio p50 %5.1fx  p99 %5.1fx | added p50 %6.1f ms\n", \
      w, v["window-ms"], v["p50-ms"], v["p99-ms"], v["base-p50-ms"], v["base-p99-ms"], v["p50-ms"]/v["base-p50-ms"], v["p99-ms"]/v["base-p99-ms"], v["p50-ms"]-v["base-p50-ms"]
  }
  END { printf "%d writes per window; the added latency is the batch window plus conversion and apply\n", n }'
