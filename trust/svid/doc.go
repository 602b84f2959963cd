// Package svid holds X.509-SVIDs and keeps them fresh.
//
// Manager is the control plane's side: for each identity it hands out
// itself (SDS to proxies, the Workload API to local processes, its own
// member identity) it mints an SVID with a key it generates, renews it at
// half life (default TTL 1h, so every 30 minutes), retries failed renewals
// with backoff while the current SVID is still valid, and tells
// subscribers. RotateAll reissues everything at once after a root rotation
// changed the intermediate.
//
// Rotator is the other side: a process that holds its own key (a sidecar
// with its projected service-account token, a VM with a join token) and
// asks the CA service for an SVID by CSR, renewing at half life.
//
// Both satisfy go-spiffe's x509svid.Source, so go-spiffe's tlsconfig builds
// handshakes from them; with a bundle.Source beside them, certificates and
// trust roots rotate under live traffic without a failed handshake
// (TestRootRotationUnderTraffic).
package svid
