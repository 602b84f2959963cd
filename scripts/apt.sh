#!/usr/bin/env bash
# Installs Debian packages the project's targets need, only when missing:
#   scripts/apt.sh protoc kubectl haproxy wrk ...
# Each name is a command; the Debian package that provides it is looked up
# below. Needs root (or sudo) the first time; later runs cost nothing.
set -euo pipefail
declare -A pkg=(
  [protoc]=protobuf-compiler [kubectl]=kubernetes-client [haproxy]=haproxy
  [wrk]=wrk [hey]=hey [ip]=iproute2 [tc]=iproute2 [iptables]=iptables
  [chromium]=chromium [etcd]=etcd-server [etcdctl]=etcd-client [nginx]=nginx
)
missing=()
for cmd in "$@"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg[$cmd]:-$cmd}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null 2>&1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}
