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
# Test packages run in parallel and dpkg admits one installer at a time:
# take turns here, and let apt wait for a lock held by anything else.
exec 9>"${TMPDIR:-/tmp}/meridian-apt.sh.lock"
flock 9
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)
echo "installing Debian packages: ${missing[*]}" >&2
$sudo "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1 || {
  $sudo "${apt[@]}" update >/dev/null 2>&1
  $sudo "${apt[@]}" install "${missing[@]}" >/dev/null
}
