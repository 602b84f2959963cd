#!/usr/bin/env bash
# Federation on loopback, each figure beside a baseline measured in the
# same run:
#   - propagation: time from one endpoint change at its owner until every
#     global view holds it, N = 3, 10, 30 control planes (LAN preset), p50 and
#     p99 over 100 changes; baseline: memberlist alone spreading one metadata
#     update with the same timing (the gossip floor). Target: p99 < 1 s at 30.
#   - bytes on the wire per change (whole mesh of 3, background gossip
#     subtracted) in segments of 100 and 10,000 endpoints; baseline: one full
#     copy of the segment. Target: independent of the segment's size.
#   - catch-up: a new control plane joins and holds a 10,000-endpoint segment;
#     baseline: building the same segment locally.
#   - failure detection of a crashed control plane (10 members, 3 crashes):
#     Meridian's LAN preset beside memberlist's DefaultLANConfig.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'BenchmarkPropagation|BenchmarkBytesPerChange|BenchmarkCatchUp|BenchmarkFailureDetection' \
  -benchtime 1x -timeout 30m ./federation)
echo "$out" | grep -E '^Benchmark'
echo "$out" | awk '
  function metric(name,   i) { for (i = 3; i < NF; i++) if ($(i+1) == name) return $i; return "" }
  /^BenchmarkPropagation\/members=/ {
    split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); n = a[2]
    printf "propagation, %2d control planes: p50 %6.1f ms, p99 %6.1f ms | gossip floor p50 %6.1f ms, p99 %6.1f ms | p99 %.2fx the floor%s\n",
      n, metric("p50-ms"), metric("p99-ms"), metric("gossip-p50-ms"), metric("gossip-p99-ms"), metric("p99-ms") / metric("gossip-p99-ms"),
      (n == 30 ? (metric("p99-ms") < 1000 ? "  (target p99 < 1000 ms: met)" : "  (target p99 < 1000 ms: MISSED)") : "")
  }
  /^BenchmarkBytesPerChange\/endpoints=/ {
    split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); n = a[2]; per[n] = metric("B/change")
    printf "bytes per change, segment of %5d endpoints: %7.0f B (gRPC %5.0f B) | one full copy %8.0f B | %.0fx smaller\n",
      n, per[n], metric("grpc-B/change"), metric("full-copy-B"), metric("full-copy-B") / per[n]
  }
  /^BenchmarkCatchUp/ {
    printf "catch-up of a new control plane, 10,000 endpoints: %.0f ms | local build %.0f ms | %.1fx the local floor\n",
      metric("catchup-ms"), metric("local-build-ms"), metric("catchup-ms") / metric("local-build-ms")
  }
  /^BenchmarkFailureDetection\/preset=/ {
    split($1, a, "="); sub(/-[0-9]+$/, "", a[2]); det[a[2]] = metric("detect-ms"); detmax[a[2]] = metric("detect-max-ms")
  }
  END {
    if (per[100] > 0) printf "bytes per change, 10,000 vs 100 endpoints: %.2fx (target ~1x: independent of the segment size)\n", per[10000] / per[100]
    if (det["meridian-lan"] > 0) printf "failure detection (10 members): Meridian LAN preset %.1f s (max %.1f s) | memberlist DefaultLANConfig %.1f s (max %.1f s) | %.1fx faster\n",
      det["meridian-lan"] / 1000, detmax["meridian-lan"] / 1000, det["memberlist-lan"] / 1000, detmax["memberlist-lan"] / 1000, det["memberlist-lan"] / det["meridian-lan"]
  }'
