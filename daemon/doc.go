// Package daemon assembles meridiand: its configuration (a YAML file and
// flags that override it), the parts every component shares, the components
// themselves, and their life from start to a clean stop.
//
//	Config ──New──► store (etcd: embedded, or external)
//	                registry (the local cluster's segment)
//	                gRPC server ◄── Workload API, health, reflection, xDS, policy, trust, ...
//	                TLS xDS server ◄── xDS and health only (trust on; xdstls.go)
//	                admin mux   ◄── /healthz /readyz /metrics /debug/registry
//	                components  ◄── workload, kube discovery, ...
//	       ──Run──► serve until the context ends (SIGTERM), then stop taking
//	                requests, stop every component and wait for it, close etcd
//
// Adding a component (xDS server, federation, trust, policy API) is one file
// here, wire_NAME.go or NAME.go, with a func(ctx, *Daemon) error that builds
// the component with its own package's New and then uses the daemon's
// fields and hooks:
//
//   - d.GRPC (register services), d.Admin (admin handlers), d.Registry,
//     d.Store, d.Metrics (a prometheus.Registerer), d.Log;
//   - d.Go(name, run) for its Run(ctx) error, started and stopped by Run;
//   - d.GoLeader(name, run) instead, for what only the replica that leads
//     the cluster may run — whatever writes the local segment (discovery)
//     or must exist once per cluster: with federation, run starts with
//     each term of leading and its context ends with the term, so it must
//     be callable again; without federation it is a plain runner;
//   - d.AddReadyCheck(name, check) for /readyz;
//   - d.OnClose(fn) for what must be released after every runner stopped;
//
// and one line in the wiring list in daemon.go. Its configuration is a
// field of Config (with a flag in flags.go when users need one), defaulted
// in DefaultConfig and checked in Config.Validate, so that a bad value is
// reported with its field and flag before anything starts.
//
// What it must not do: hold the logic of a component. Wiring files only
// translate configuration and connect parts; anything worth a test of its
// own belongs in the component's package.
//
// High availability: replicas of one cluster share its etcd, and
// federation elects the one that leads. The leader runs Kubernetes
// discovery, the Workload API (heartbeats live in its memory) and the
// policy custom-resource reader; the others serve xDS, the policy API and
// the dashboard from the same replicated state, answer Workload API calls
// with Unavailable naming the leader's address (federation.advertiseAPIAddr),
// and take over within about the election lease (2s to 10s by preset).
// federation counts any write to the local segment a follower makes
// (meridian_federation_follower_segment_writes_total).
//
// Ports: the gRPC port (grpcAddr, default :15010) is plaintext and serves
// everything: xDS, the Workload API, the policy and trust admin APIs.
// With trust on, the TLS xDS port (xds.tlsAddr, default grpcAddr's host
// and port 15011) serves xDS alone, with this cluster's member SVID as
// server certificate. It requests client certificates and verifies them
// against the mesh bundle when given, as Go's VerifyClientCertIfGiven
// does for SPIFFE: a proxy outside Kubernetes (meridian-proxy --xds-tls,
// enrolled with a join token) presents its SVID and is attested by it
// (xds/server's PeerSVID) — the plaintext port cannot attest it; a pod
// that presents none attests with its service-account token as on the
// plaintext port; a certificate that is not an SVID of the mesh refuses
// the handshake. Istio serves TLS xDS on 15012; here 15012 is the CA
// service's (trust.caAddr, JSON over HTTPS), so TLS xDS takes 15011,
// Istio's former mTLS xDS port. Handshakes are counted by result
// (meridian_xds_tls_handshakes_total) and refusals logged.
//
// Departures from DESIGN.md: Kubernetes discovery is off unless asked for
// (--kube), because the lab and on-prem control planes run without
// Kubernetes and a missing kubeconfig must not stop them.
package daemon
