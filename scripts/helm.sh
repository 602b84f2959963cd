#!/usr/bin/env bash
# Builds helm from the helm.sh/helm/v3 module pinned in tools/helm and caches
# it under .cache/bin (git-ignored). Prints the binary's path. The deploy
# tests use it to lint and render the chart; meridianctl does not need it (the
# plain manifests under deploy/manifests are rendered from the chart and
# committed). A second run costs nothing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mod="$top/tools/helm"
ver=$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$mod/go.mod")
out="$top/.cache/bin/helm-$ver"
if [ ! -x "$out" ]; then
  mkdir -p "$top/.cache/bin"
  echo "building helm $ver (about 2 minutes on 2 cores, once)..." >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$out.tmp" "$out"
  echo "built $out" >&2
fi
echo "$out"
