// Package lab runs Meridian's multi-cluster lab on one machine, without
// Kubernetes or Docker: what `meridianctl lab up | status | down | cut |
// heal` and `make demo` drive, and what the e2e-multicluster suite builds
// its clusters with.
//
//	Start ─► lock STATE/lock (held for the lab's life; a crash frees it)
//	      ─► clean what a crashed lab left (pid files, namespaces PREFIX-*)
//	      ─► network: netns — a namespace per cluster, veth to a core
//	         namespace that routes SUBNET.I.0/24 between them and the host
//	         (and tc netem latency where the kernel has it); or loopback —
//	         127.77.I.H, one range per cluster
//	      ─► meridiand per cluster (subprocess, own process group, config
//	         in STATE/clusters/NAME/meridiand.yaml, embedded etcd there):
//	         the first starts the mesh under the lab's gossip key; every
//	         other cluster joins it as a user's would, `meridianctl join
//	         --trust-token=false` merging seeds and keyring into its
//	         configuration (its intermediate is issued offline); wait for
//	         /readyz and full membership
//	      ─► demo instances (cmd/meridian-demo serve): frontend → catalog
//	         v1/v2 → inventory, customer-records in the EU (and a stray copy
//	         outside it), registered through the Workload API with their
//	         service account (the service's name); each behind a
//	         meridian-proxy sidecar (explicit ports: inbound INSTANCE:9090
//	         → 127.0.0.1:APP, one upstream port per upstream service), or,
//	         with Sidecars off, proxyless gRPC over xds:///. Every proxy of
//	         the lab, sidecar or gateway, enrolls for an SVID: a join token
//	         for its service account (`meridianctl trust join-token`, which
//	         meridiand answers on its loopback only — in netns mode run
//	         inside the namespace, meridiand listening there on every
//	         address) spent at the CA service (IP:15012), then xDS over TLS
//	         (IP:15011) with that SVID, attested by it, secrets over SDS
//	      ─► gateways per cluster (meridian-proxy): an ingress gateway
//	         (SUBNET.I.3:8080, gRPC and HTTP routed by authority: `lab
//	         call`) and an east-west gateway (SUBNET.I.4:15443, published
//	         as the cluster's gateway); wait until both are ready and the
//	         frontend answers through every ingress
//	      ─► the demo's policies (FailoverPolicy, ResidencyRule) through the
//	         first cluster's policy API; federation carries them
//	      ─► traffic generators (meridian-demo load), "the users" of every
//	         cluster, serving /stats
//	      ─► lab.json: every address, for scripts
//	Watch ─► prints where traffic goes whenever it moves
//	Close ─► stops everything (users, demo, control planes), removes the
//	         namespaces and the state directory
//
// An outage (Cut) is a cut link in netns mode — the cluster's processes
// keep running, nothing reaches them — and SIGSTOP of the cluster's
// processes on loopback, so that in both modes connections hang rather
// than being refused, as across a real cut.
//
// Every process is started with MERIDIAN_LAB=STATEDIR in its environment
// and its pid in STATE/pids: cleanup after a crash signals a pid only when
// the process still carries that mark, so a recycled pid is never hit.
//
// What it must not do: contain mesh logic. The lab starts the real
// binaries and talks to them through their public surfaces (admin HTTP,
// gRPC APIs); whatever it shows is what Meridian does.
//
// Departures from DESIGN.md: the design asks for tc netem latency between
// regions; kernels without sch_netem (this project's CI machines) get none,
// and the lab says so rather than failing. The sidecars run without
// traffic capture (explicit ports; the instances of a cluster share its
// namespace, so capture would catch them all). Mesh traffic is mTLS under
// the mesh's default, STRICT: the sidecars take nothing else, and a client
// verifies the SVIDs of the service accounts a service's endpoints
// registered with (spiffe://lab.meridian/ns/shop/sa/SERVICE; the users
// run as shop/users, the gateways as meridian-system/ingress-gateway and
// east-west-gateway), so AuthorizationPolicies can name them. Calls from
// outside the mesh enter through the ingress gateways (`lab call`).
// Options.Permissive — for the e2e suite, whose proxyless gRPC users have
// no SVIDs — applies PeerAuthentication shop/lab-plaintext-clients
// (PERMISSIVE), and the lab says so. The trust component runs with one
// offline root and an intermediate per cluster; Options.RootHolder — for
// the e2e suite's root rotation — starts the first cluster's meridiand
// from the root directory instead, so that `meridianctl trust rotate` can
// run there (Lab.LocalCtl runs meridianctl as a caller on a meridiand's
// own host, as rotation steps and join tokens require). The east-west gateways
// run and are published, but every cluster is on one network ("lab"), so
// traffic between clusters goes direct, mTLS from sidecar to sidecar;
// giving each cluster its own network would send it through them (they
// route mTLS by SNI) — not done yet.
package lab
