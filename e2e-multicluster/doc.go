// Package e2e holds Meridian's end-to-end tests across several real
// clusters on one machine (the tests are in _test.go files; this package
// has no other code).
//
// Each cluster is a real kube-apiserver (internal/kubetest) and a real
// meridiand process with Kubernetes discovery on, in its own network
// namespace, built and run by package lab exactly as `meridianctl lab up`
// runs them; the clusters gossip under one key. The demo application's
// instances are real processes (cmd/meridian-demo), published as Services,
// EndpointSlices, Pods and Nodes (for locality) in their cluster's API
// server. Traffic comes from in-process generators (lab/traffic), one per
// "users in cluster X", through grpc-go's own xDS client bootstrapped
// against that cluster's meridiand, or through a meridian-proxy of their
// own. Every proxy (the instances' sidecars, the gateways, the users'
// meridian-proxy) enrolls with a join token for an SVID of its service
// account, gets xDS over TLS and talks mTLS; the Pods run as those service
// accounts. The proxyless users have no SVID, so the suite runs the lab
// PERMISSIVE (lab.Options.Permissive); the lab's own test checks STRICT.
//
//	kube-apiserver ──informers──► meridiand ◄──gossip──► meridiand ◄──► meridiand
//	  (per cluster)                  │ xDS (ADS)
//	                                 ▼
//	users (grpc-go xds:///, or meridian-proxy) ──► [proxy] frontend [proxy] ──► [proxy] catalog ...
//
// Scenarios print their figures (t.Log, visible with -v): discovery and
// convergence times, traffic shares, time to recover to 99% success after
// a cut, errors during the switch, residency violations.
//
// Which run where: every scenario runs by default (make test and make
// e2e); MERIDIAN_SKIP_SLOW_E2E=1 keeps only the fast subset — discovery, locality, region failover (proxyless and
// through meridian-proxy), residency during an EU outage, live drill,
// calls through every cluster's ingress gateway —
// which crosses discovery → federation → xDS → proxy → traffic, should
// the suite outgrow CI's time. The others (zone failover, partition and
// heal, crash and restart, canary, root rotation) skip only then, saying
// so. The whole suite skips only with MERIDIAN_SKIP_KUBE=1 (no
// kube-apiserver) or without root (network namespaces), saying so.
//
// Root rotation runs a lab of its own — two clusters, STRICT, no
// Kubernetes — whose first meridiand holds the root (lab.Options.
// RootHolder), with an 8s SVID TTL so that `meridianctl trust rotate`
// (prepare, half a TTL, activate, a TTL, retire) takes seconds: the shared
// mesh keeps its offline root, which its later proxies enroll with. Calls
// on connections the proxies opened before the rotation keep them open
// through it; new handshakes are those of users enrolled afterwards,
// trusting the new root alone.
//
// The suite needs root and `ip netns` (a missing privilege is the one
// reason it skips) and the kube-apiserver binary (MERIDIAN_SKIP_KUBE=1
// skips, as everywhere).
package e2e
