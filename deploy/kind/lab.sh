#!/usr/bin/env bash
# A three-cluster Meridian lab on kind, for machines with Docker:
#
#   deploy/kind/lab.sh up       create the clusters, build and load the images,
#                               install Meridian (demo profile) in each, join them
#   deploy/kind/lab.sh status   the clusters, their nodes' localities and meridiand
#   deploy/kind/lab.sh down     delete the clusters
#
# The clusters are those of the lab (DESIGN.md): onprem-dc1 in onprem-east,
# eks-use1 in us-east-1, eks-euw1 in eu-west-1 (jurisdiction=eu), each on its
# own network, so that cross-cluster traffic goes through east-west gateways
# (NodePort 31443 on each control-plane node, on Docker's "kind" network).
#
# One root of trust for the whole lab: `meridianctl trust init` once into
# $LAB_STATE/ca, and one intermediate per cluster signed by it, handed to
# each meridiand as the Secret meridian-trust-ca. Keep $LAB_STATE to
# recreate a cluster into the same mesh.
#
# Environment: MERIDIAN_TAG (image tag, default dev), KIND, KUBECTL, DOCKER
# (commands, default from $PATH), LAB_CLUSTERS (a subset, space-separated),
# LAB_STATE (default .lab/kind).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
chart="$top/deploy/helm/meridian"
tag=${MERIDIAN_TAG:-dev}
kind=${KIND:-kind}
kubectl=${KUBECTL:-kubectl}
docker=${DOCKER:-docker}
ns=meridian-system
ctl="$top/bin/meridianctl"
ew_nodeport=31443
gossip_nodeport=30946   # each meridiand's gossip, as other kind clusters reach it
state=${LAB_STATE:-$top/.lab/kind}   # the mesh root and each cluster's intermediate
trust_domain=lab.meridian
read -r -a clusters <<<"${LAB_CLUSTERS:-onprem-dc1 eks-use1 eks-euw1}"

declare -A region=([onprem-dc1]=onprem-east [eks-use1]=us-east-1 [eks-euw1]=eu-west-1)
declare -A labels=(
  [onprem-dc1]="provider=onprem,jurisdiction=us"
  [eks-use1]="provider=eks,jurisdiction=us"
  [eks-euw1]="provider=eks,jurisdiction=eu"
)
declare -A network=([onprem-dc1]=net-onprem [eks-use1]=net-us [eks-euw1]=net-eu)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'lab.sh: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"; }

check_clusters() {
  local c
  for c in "${clusters[@]}"; do
    [ -n "${region[$c]:-}" ] || die "unknown cluster $c in LAB_CLUSTERS (want onprem-dc1, eks-use1, eks-euw1)"
  done
}

exists() { "$kind" get clusters 2>/dev/null | grep -qx "$1"; }

# node_ip prints the Docker address of a cluster's control-plane node, where
# its east-west gateway's NodePort is reached from the other clusters.
node_ip() {
  "$docker" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1-control-plane"
}

images() {
  say "building images meridian-mesh/meridian:$tag and meridian-mesh/meridian-init:$tag"
  "$docker" build -f "$top/deploy/Dockerfile" --target meridian -t "meridian-mesh/meridian:$tag" "$top"
  "$docker" build -f "$top/deploy/Dockerfile" --target init -t "meridian-mesh/meridian-init:$tag" "$top"
}

# install installs or upgrades Meridian in one cluster with the chart, as
# meridianctl install would, plus what only a kind lab needs: local images,
# NodePort gateways, and the gateway address other clusters use.
install() {
  local c=$1 ctx="kind-$1" ip sets
  ip=$(node_ip "$c")
  [ -n "$ip" ] || die "no address for $c-control-plane: is the cluster up?"
  # The CA's Secrets are created once; replacing them would lose the CA.
  "$kubectl" --context "$ctx" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" --context "$ctx" apply -f - >/dev/null
  if ! "$kubectl" --context "$ctx" -n "$ns" get secret meridian-trust-key >/dev/null 2>&1; then
    "$kubectl" --context "$ctx" -n "$ns" create secret generic meridian-trust-key \
      --from-literal=key="$(head -c 32 /dev/urandom | base64)" >/dev/null
  fi
  [ -d "$state/ca/$c" ] || "$ctl" trust issue-intermediate --dir "$state/ca" --cluster "$c" >/dev/null
  if ! "$kubectl" --context "$ctx" -n "$ns" get secret meridian-trust-ca >/dev/null 2>&1; then
    "$kubectl" --context "$ctx" -n "$ns" create secret generic meridian-trust-ca --from-file="$state/ca/$c" >/dev/null
  fi
  sets="cluster.name=$c,cluster.region=${region[$c]},cluster.network=${network[$c]}"
  sets+=",trust.trustDomain=$trust_domain,trust.caSecret=meridian-trust-ca"
  sets+=",cluster.gateways={$ip:$ew_nodeport}"
  sets+=",image.tag=$tag,image.pullPolicy=Never,initImage.tag=$tag,initImage.pullPolicy=Never"
  sets+=",gateways.ingress.service.type=NodePort,gateways.eastwest.service.type=NodePort"
  sets+=",gateways.eastwest.service.ports[0].name=tls,gateways.eastwest.service.ports[0].port=15443"
  sets+=",gateways.eastwest.service.ports[0].targetPort=15443,gateways.eastwest.service.ports[0].nodePort=$ew_nodeport"
  local kv label_sets=()
  IFS=, read -r -a kv <<<"${labels[$c]}"
  for l in "${kv[@]}"; do label_sets+=(--set-string "cluster.labels.${l%%=*}=${l#*=}"); done
  say "installing Meridian in $c (${region[$c]}, ${labels[$c]}), east-west gateway $ip:$ew_nodeport"
  "$helm" upgrade --install meridian "$chart" --kube-context "$ctx" --namespace "$ns" --create-namespace \
    -f "$chart/profiles/demo.yaml" --set "$sets" "${label_sets[@]}" --wait --timeout 5m
}

up() {
  need "$docker" "the lab runs its clusters as Docker containers (kind)"
  need "$kind" "install kind: go install sigs.k8s.io/kind@v0.33.0"
  need "$kubectl" "install kubectl (Debian: apt-get install kubernetes-client)"
  need go "Go builds meridianctl and helm"
  "$docker" info >/dev/null 2>&1 || die "Docker is not running (docker info failed)"
  check_clusters
  helm=$("$top/scripts/helm.sh")
  (cd "$top" && go build -o "$top/bin/meridianctl" ./cmd/meridianctl)
  if [ ! -f "$state/ca/root-key.pem" ]; then
    say "creating the lab's root of trust in $state/ca"
    mkdir -p "$state"
    "$ctl" trust init --trust-domain "$trust_domain" --dir "$state/ca" >/dev/null
  fi
  images
  local c
  for c in "${clusters[@]}"; do
    if exists "$c"; then
      say "cluster $c exists"
    else
      say "creating cluster $c"
      "$kind" create cluster --config "$here/$c.yaml" --wait 5m
    fi
    "$kind" load docker-image --name "$c" "meridian-mesh/meridian:$tag" "meridian-mesh/meridian-init:$tag"
  done
  for c in "${clusters[@]}"; do install "$c"; done
  join
  status
  cat >&2 <<MSG

The lab is up. Next:
  kubectl --context kind-${clusters[0]} -n $ns port-forward svc/meridian-dashboard 15014:80   # then open http://127.0.0.1:15014/ui
  kubectl --context kind-${clusters[0]} label namespace default meridian.io/inject=enabled     # sidecars for new pods
  deploy/kind/lab.sh down                                                                      # delete the clusters
MSG
}

# join connects every cluster's control plane to the first one's with
# `meridianctl join`: gossip seeds and keyring (the trust side is done, each
# cluster's intermediate comes from the lab's root, so --trust-token=false).
# The first cluster's meridiand is reached through a port-forward: its calls
# arrive on the pod's loopback, where meridiand answers members' questions.
# Its members advertise pod addresses, which other kind clusters cannot
# reach, so the seeds are its node's gossip NodePort instead. Then join
# checks each cluster from both sides. This needs from the chart what it
# does not have yet: federation values (enabled, keySecret naming a Secret
# with the keyring under "keys", seeds) and gossip exposed on the NodePort
# $gossip_nodeport; until then the step says so and leaves the clusters
# unjoined.
join() {
  local first=${clusters[0]} c port=15110 seed
  if ! grep -q '^federation:' "$chart/values.yaml"; then
    say "not joining the clusters: this chart has no federation settings yet (each cluster runs alone);"
    say "by hand, once it has: $ctl join --cluster CLUSTER --mesh FIRST-MERIDIAND --gossip-key-file $state/gossip.keys --trust-token=false"
    return 0
  fi
  [ -f "$state/gossip.keys" ] || (umask 077 && head -c 32 /dev/urandom | base64 >"$state/gossip.keys")
  seed="$(node_ip "$first"):$gossip_nodeport"
  forward "$first" "$port"
  for c in "${clusters[@]:1}"; do
    say "joining $c to $first"
    "$ctl" join --cluster "$c" --mesh "127.0.0.1:$port" --gossip-key-file "$state/gossip.keys" \
      --trust-token=false --seeds "$seed" --dir "$state/join/$c" -o json >/dev/null
    "$kubectl" --context "kind-$c" -n "$ns" create secret generic meridian-gossip \
      --from-file=keys="$state/join/$c/gossip.keys" --dry-run=client -o yaml | "$kubectl" --context "kind-$c" -n "$ns" apply -f - >/dev/null
    "$helm" upgrade meridian "$chart" --kube-context "kind-$c" --namespace "$ns" --reuse-values \
      --set "federation.enabled=true,federation.keySecret=meridian-gossip,federation.seeds={$seed}" --wait --timeout 5m
    forward "$c" $((port + 1))
    "$ctl" join --server "127.0.0.1:$((port + 1))" --mesh "127.0.0.1:$port" --wait 2m || die "$c did not join $first"
  done
}

# forward port-forwards a local port to a cluster's meridiand gRPC until the
# script ends, and waits until it answers.
forward() {
  local tries=50
  "$kubectl" --context "kind-$1" -n "$ns" port-forward deploy/meridiand "$2:15010" >/dev/null &
  forwards+=("$!")
  while [ $tries -gt 0 ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.2
    tries=$((tries - 1))
  done
  die "kubectl port-forward to $1's meridiand did not open 127.0.0.1:$2"
}
forwards=()
stop_forwards() { [ ${#forwards[@]} -eq 0 ] || kill "${forwards[@]}" 2>/dev/null || true; }
trap stop_forwards EXIT

status() {
  check_clusters
  local c
  for c in "${clusters[@]}"; do
    if ! exists "$c"; then
      echo "$c: not created"
      continue
    fi
    echo "== $c (${region[$c]}, ${labels[$c]})"
    "$kubectl" --context "kind-$c" get nodes -L topology.kubernetes.io/region -L topology.kubernetes.io/zone
    "$kubectl" --context "kind-$c" -n "$ns" get pods -o wide 2>/dev/null || true
  done
}

down() {
  need "$kind" "kind deletes the lab's clusters"
  check_clusters
  local c
  for c in "${clusters[@]}"; do
    if exists "$c"; then
      say "deleting cluster $c"
      "$kind" delete cluster --name "$c"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
