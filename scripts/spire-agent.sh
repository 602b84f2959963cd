#!/usr/bin/env bash
# Builds spire-agent from the github.com/spiffe/spire module pinned in
# tools/spire and caches it under .cache/bin (git-ignored). Prints the
# binary's path. The trust tests use it as an independent SPIFFE Workload API
# client (`spire-agent api fetch x509`). A second run costs nothing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mod="$top/tools/spire"
ver=$(awk '$1 == "github.com/spiffe/spire" {print $2}' "$mod/go.mod")
out="$top/.cache/bin/spire-agent-$ver"
if [ ! -x "$out" ]; then
  mkdir -p "$top/.cache/bin"
  echo "building spire-agent $ver (about 2 minutes on 2 cores, once)..." >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" github.com/spiffe/spire/cmd/spire-agent)
  mv "$out.tmp" "$out"
  echo "built $out" >&2
fi
echo "$out"
