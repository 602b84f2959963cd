#!/usr/bin/env bash
# Builds kube-apiserver from the k8s.io/kubernetes module pinned in
# tools/kubeapiserver and caches it under .cache/bin (git-ignored). Prints the
# binary's path. A second run with the binary present costs nothing.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mod="$top/tools/kubeapiserver"
ver=$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$mod/go.mod")
out="$top/.cache/bin/kube-apiserver-$ver"
if [ ! -x "$out" ]; then
  mkdir -p "$top/.cache/bin"
  echo "building kube-apiserver $ver (about 5 minutes on 2 cores, once)..." >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$out.tmp" "$out"
  echo "built $out" >&2
fi
echo "$out"
