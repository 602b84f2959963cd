// Package identity turns the TLS contexts and SDS secrets of meridian-proxy's
// configuration into crypto/tls configurations.
//
// Mesh mTLS — a context whose peers are validated by a SPIFFE bundle
// (trust's ROOTCA secret, or any validation context delivered over SDS) —
// uses go-spiffe's tlsconfig exactly as package trust/mtls does
// (ServerTLS: MTLSServerConfig with any authorized peer, RBAC deciding
// later; ClientTLS: MTLSClientConfig accepting only the server IDs the
// context names, or any SVID of a trusted domain when it names none).
// trust/mtls itself is not linked: through trust/sds and trust/attest it
// brings in the control plane's Kubernetes clients, which would double
// meridian-proxy's memory (see xdsconfig's tls.go for the same choice
// about trust/sds). Other TLS — an ingress gateway's given certificate, an
// upstream verified against trusted CAs — is plain crypto/tls with Envoy's
// SAN matchers. An upstream that trusts the system's roots
// (system_root_certs: remote JWKS, TLS to external hosts) must also
// present a certificate for the SNI when no SAN matcher is given — stricter
// than Envoy, which checks only the chain: a public CA vouches for any
// name.
//
// Secrets holds the newest SDS secrets, and the certificate and bundle
// sources handed to go-spiffe read it at every handshake: an SVID rotation
// or a root rotation (bundles carrying old and new roots during the
// overlap) takes effect on the next connection, with no listener restart
// and no failed handshake.
//
// This package does not issue or rotate certificates: package trust does,
// and its SDS secrets arrive over xDS.
package identity
