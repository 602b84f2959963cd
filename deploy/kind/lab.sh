#!/usr/bin/env bash
# A three-cluster Meridian lab on kind, for machines with Docker:
#
#   deploy/kind/lab.sh up       create the clusters, build and load the images,
#                               install Meridian (demo profile) in each, join them
#   deploy/kind/lab.sh status   the clusters, their nodes' localities and meridiand
#   deploy/kind/lab.sh down     delete the clusters
#   deploy/kind/lab.sh values CLUSTER NODE-IP [SEED]
#                               the chart values a cluster gets (no Docker needed)
#
# The clusters are those of the lab (DESIGN.md): onprem-dc1 in onprem-east,
# eks-use1 in us-east-1, eks-euw1 in eu-west-1 (jurisdiction=eu), each on its
# own network, so that cross-cluster traffic goes through east-west gateways
# (NodePort 31443 on each control-plane node, on Docker's "kind" network).
#
# One root of trust for the whole lab: `meridianctl trust init` once into
# $LAB_STATE/ca, and one intermediate per cluster signed by it, handed to
# each meridiand as the Secret meridian-trust-ca. One gossip keyring,
# $LAB_STATE/gossip.keys: the first cluster starts the mesh with it, the
# others join through `meridianctl join`. Keep $LAB_STATE to recreate a
# cluster into the same mesh.
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
gossip_nodeport=30946   # each meridiand's gossip (TCP and UDP), as other kind clusters reach it
federation_nodeport=30947   # and its replication service
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

# values prints the chart values of one cluster of the lab, on top of the
# demo profile: its locality, the lab's trust domain and its intermediate's
# Secret, local images, NodePort gateways with the east-west address other
# clusters use, and federation: gossip and replication on NodePorts of the
# node at $2, the keyring from the Secret meridian-gossip. The first cluster
# federates from the start (it starts the mesh); the others once they have a
# seed ($3: joined with meridianctl join), so that they never gossip alone.
values() {
  local c=$1 ip=$2 seed=${3:-} kv l
  [ -n "${region[$c]:-}" ] || die "unknown cluster $c (want onprem-dc1, eks-use1, eks-euw1)"
  [ -n "$ip" ] || die "values: give the node IP of $c"
  cat <<VALUES
cluster:
  name: $c
  region: ${region[$c]}
  network: ${network[$c]}
  gateways: ["$ip:$ew_nodeport"]
  labels:
VALUES
  IFS=, read -r -a kv <<<"${labels[$c]}"
  for l in "${kv[@]}"; do printf '    %s: "%s"\n' "${l%%=*}" "${l#*=}"; done
  cat <<VALUES
trust:
  trustDomain: $trust_domain
  caSecret: meridian-trust-ca
image: {tag: "$tag", pullPolicy: Never}
initImage: {tag: "$tag", pullPolicy: Never}
gateways:
  ingress:
    service: {type: NodePort}
  eastwest:
    service:
      type: NodePort
      ports: [{name: tls, port: 15443, targetPort: 15443, nodePort: $ew_nodeport}]
VALUES
  if [ "$c" = "${clusters[0]}" ] || [ -n "$seed" ]; then
    cat <<VALUES
federation:
  enabled: true
  keySecret: meridian-gossip
  gossipPort: $gossip_nodeport
  grpcPort: $federation_nodeport
  advertiseAddress: "$ip"
  service: {type: NodePort}
  seeds: [${seed:+"$seed"}]
VALUES
  fi
}

# gossip_secret creates or replaces a cluster's meridian-gossip Secret from a
# keyring file (key "keys", as the chart's federation.keySecret wants it).
gossip_secret() {
  "$kubectl" --context "kind-$1" -n "$ns" create secret generic meridian-gossip --from-file=keys="$2" \
    --dry-run=client -o yaml | "$kubectl" --context "kind-$1" -n "$ns" apply -f - >/dev/null
}

# install installs or upgrades Meridian in one cluster with the chart, as
# meridianctl install would, with the lab's values (above); $2 is the seed
# of a cluster that joins.
install() {
  local c=$1 seed=${2:-} ctx="kind-$1" ip
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
  # The keyring: the lab's for the first cluster, the join directory's for
  # one that joined (also when the cluster was created again since).
  if [ "$c" = "${clusters[0]}" ]; then
    gossip_secret "$c" "$state/gossip.keys"
  elif [ -f "$state/join/$c/gossip.keys" ]; then
    gossip_secret "$c" "$state/join/$c/gossip.keys"
  fi
  mkdir -p "$state/values"
  values "$c" "$ip" "$seed" >"$state/values/$c.yaml"
  say "installing Meridian in $c (${region[$c]}, ${labels[$c]}), east-west gateway $ip:$ew_nodeport, gossip $ip:$gossip_nodeport"
  "$helm" upgrade --install meridian "$chart" --kube-context "$ctx" --namespace "$ns" --create-namespace \
    -f "$chart/profiles/demo.yaml" -f "$state/values/$c.yaml" --wait --timeout 5m
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
  [ -f "$state/gossip.keys" ] || (umask 077 && head -c 32 /dev/urandom | base64 >"$state/gossip.keys")
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
  # A cluster that joined before keeps its seed (join prepares it once).
  for c in "${clusters[@]}"; do
    if [ "$c" != "${clusters[0]}" ] && [ -f "$state/join/$c/gossip.keys" ]; then
      install "$c" "$(first_seed)"
    else
      install "$c"
    fi
  done
  join
  status
  cat >&2 <<MSG

The lab is up. Next:
  kubectl --context kind-${clusters[0]} -n $ns port-forward svc/meridian-dashboard 15014:80   # then open http://127.0.0.1:15014/ui
  kubectl --context kind-${clusters[0]} label namespace default meridian.io/inject=enabled     # sidecars for new pods
  deploy/kind/lab.sh down                                                                      # delete the clusters
MSG
}

# first_seed is the first cluster's gossip as the other kind clusters reach
# it: its node's NodePort. Its members advertise that address too
# (federation.advertiseAddress), since pod addresses do not cross clusters.
first_seed() { printf '%s:%s' "$(node_ip "${clusters[0]}")" "$gossip_nodeport"; }

# join connects every other cluster's control plane to the first one's, as
# a user's new cluster would: `meridianctl join` against the first
# meridiand (through a port-forward) collects the seeds — given here, the
# NodePort — and the keyring into $LAB_STATE/join/CLUSTER (the trust side
# is done: each intermediate comes from the lab's root, so
# --trust-token=false); install makes the keyring the cluster's
# meridian-gossip Secret and upgrades the chart with federation on and the
# seed, and join checks the cluster from both sides. A cluster prepared
# before is only checked: join refuses a cluster already in the mesh.
join() {
  local first=${clusters[0]} c seed port=15110 next
  [ ${#clusters[@]} -gt 1 ] || return 0
  seed=$(first_seed)
  forward "$first" "$port"
  next=$port
  for c in "${clusters[@]:1}"; do
    next=$((next + 1))
    if [ ! -f "$state/join/$c/gossip.keys" ]; then
      say "joining $c to $first through $seed"
      "$ctl" join --cluster "$c" --mesh "127.0.0.1:$port" --gossip-key-file "$state/gossip.keys" \
        --trust-token=false --seeds "$seed" --dir "$state/join/$c" >/dev/null
      install "$c" "$seed"
    fi
    forward "$c" "$next"
    "$ctl" join --server "127.0.0.1:$next" --mesh "127.0.0.1:$port" --wait 2m || die "$c did not join $first"
  done
}

# forward port-forwards a local port to a cluster's meridiand gRPC until the
# script ends, and waits until it answers.
forward() {
  local tries=50
  "$kubectl" --context "kind-$1" -n "$ns" port-forward svc/meridiand "$2:15010" >/dev/null &
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
  values) [ $# -ge 3 ] || { echo "usage: $0 values CLUSTER NODE-IP [SEED]" >&2; exit 2; }; values "$2" "$3" "${4:-}" ;;
  *) echo "usage: $0 up|status|down|values CLUSTER NODE-IP [SEED]" >&2; exit 2 ;;
esac
