// Package mtls is mutual TLS between workloads: which mode a workload's
// port is in (ModeFor, from PeerAuthentication objects: STRICT unless a
// workload, namespace or mesh-wide policy says PERMISSIVE), and how a data
// plane applies it.
//
// For meridian-proxy: ServerTLS and ClientTLS build go-spiffe tlsconfig
// configurations that check peers by SPIFFE ID — the client accepts only
// the server IDs it expects, not any certificate under the root — and
// Listener admits inbound connections under a mode: it sniffs the first
// byte to tell TLS from plaintext, refuses plaintext under STRICT,
// completes the handshake, and hands over a *Conn carrying the verified
// peer (ID and issuing cluster, for package authz). Refused connections are
// closed, logged and counted in meridian_trust_mtls_refused_total
// {mode,reason} (plaintext, handshake, peer, no_data); they never reach
// Accept. Handshakes run concurrently, each bounded by HandshakeTimeout.
//
// For Envoy: InboundChains gives the inbound filter-chain matches and the
// SDS transport socket per mode (a plaintext chain only under PERMISSIVE).
//
// There is no DISABLE mode: a workload that must take plaintext uses
// PERMISSIVE, which still authenticates every peer that speaks mTLS.
package mtls
