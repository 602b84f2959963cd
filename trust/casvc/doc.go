// Package casvc is the CA's network face: a small JSON-over-HTTPS service
// meridiand serves with its member certificate, and its client.
//
//	POST /trust/v1/svid          CSR + token → X.509-SVID chain + bundle
//	POST /trust/v1/intermediate  CSR + cluster join token (or member cert) → intermediate
//	GET  /trust/v1/bundle        the mesh's trust bundle (SPIFFE JSON)
//
// A caller proves who it is with a projected service-account token
// (reviewed by Kubernetes), a join token bound to one SPIFFE ID, or — to
// renew — the still valid certificate it presents on the TLS connection.
// The CSR may name that ID and nothing else; a workload presenting another
// workload's token for its own ID is refused. Every failure is one JSON
// ErrorResponse (400 bad input, 403 refused with a reason, 404 not the root
// holder, 413 oversized, 503 otherwise), logged once here and counted in
// meridian_trust_casvc_requests_total{path,code}; the client turns a 403
// back into a *trust.RefusedError.
//
// A new cluster's first contact is FetchPinnedBundle: it fetches the bundle
// unverified and keeps it only if it holds the root whose key ID the
// operator passed along with the join token (kubeadm's CA-hash pattern).
//
// Why HTTP+JSON and not gRPC: the calls are rare (one per half-life), the
// payloads are two PEM blobs, and curl can debug it.
package casvc
