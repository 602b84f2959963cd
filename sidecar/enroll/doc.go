// Package enroll gives meridian-proxy its own X.509-SVID outside
// Kubernetes: with a one-time join token (`meridianctl trust join-token
// --namespace NS --service-account SA`) it asks meridiand's CA service for
// a first SVID, renews it at half its life with the SVID itself (no token),
// and hands it to the xDS connection as its TLS client certificate. meridiand
// attests the stream by that SVID (xds/server's PeerSVID) and sends the
// proxy its workload secrets over SDS — in Kubernetes a service-account
// token plays that part instead.
//
//	--root-cert ──► Identity ──POST /trust/v1/svid (CSR + join token)──► meridiand CA service
//	                   │    ◄── SVID chain + bundle; renewals present the SVID
//	                   └──► xDS TLS: SVID as client certificate, meridiand's
//	                        certificate checked against the bundle as a control plane
//
// The CA service is spoken to directly (JSON over HTTPS, the contract of
// trust/casvc's api.go) rather than through trust/casvc's client: that
// package links the control plane's Kubernetes and etcd clients, which
// would double the proxy's binary and memory. The test runs against a real
// meridiand, so the two cannot drift apart unnoticed.
//
// Trust starts from the mesh's root certificates given on the command line
// (`meridianctl trust bundle --pem-dir`); the trust domain is their URI
// SAN. Every answer's bundle then replaces them, so a root rotation
// reaches the proxy with its next renewal.
//
// This package does not mint or attest anything, and does not serve the
// SVID to the application (SDS and the Workload API do).
package enroll
