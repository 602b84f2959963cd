#!/usr/bin/env bash
# xDS: 1,000 services, 10,000 endpoints, 1,000 Envoy-like ADS clients over
# loopback (in their own process, so the server's CPU is measured alone):
# initial sync (wall, server CPU), time from one endpoint change until each
# client ACKed it (p50, p99) and until all had, server CPU per push, peak
# RSS — beside the naive baseline (go-control-plane's SnapshotCache, one
# full snapshot per node rebuilt on every change), measured in the same run
# and printed as ratios. The baseline needs ~30 MB per client, so it is
# measured with 100 clients (beside Meridian with 100) and scaled to 1,000.
# Then the Kubernetes path: one EndpointSlice write on a real kube-apiserver
# until all 1,000 clients ACKed (skipped when MERIDIAN_SKIP_KUBE=1).
# Extra arguments go to the program (xds/internal/xdsbench -h).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/xdsbench" ./xds/internal/xdsbench
"$dir/xdsbench" "$@"
echo
echo "Kubernetes path: EndpointSlice write -> discovery (batch window: the default 20ms, and Istio's 100ms) -> registry -> xDS -> 1,000 clients ACKed"
if [ "${MERIDIAN_SKIP_KUBE:-}" = 1 ]; then
  echo "skipped: MERIDIAN_SKIP_KUBE=1"
  exit 0
fi
out=$(go test -run '^$' -bench KubePath -benchtime 20x -timeout 20m ./xds/internal/xdsbench 2>&1) || { echo "$out" | tail -40; exit 1; }
echo "$out" | awk '
  /^BenchmarkKubePath\// {
    name = $1; sub(/^BenchmarkKubePath\//, "", name); sub(/-[0-9]+$/, "", name)
    for (i = 1; i <= NF; i++) { if ($i == "p50-ms") p50 = $(i-1); if ($i == "p99-ms") p99 = $(i-1); if ($i == "all-acked-ms") all = $(i-1) }
    verdict = (p99 < 250) ? "ok" : "FAIL"
    printf "%-32s p50 %7.1f ms  p99 %7.1f ms  all ACKed (median) %7.1f ms   target p99 < 250 ms: %s\n", name, p50, p99, all, verdict
  }'
