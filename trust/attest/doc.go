// Package attest proves who a caller is before the CA signs anything for
// it. Two methods, each returning the SPIFFE ID the evidence entitles the
// caller to:
//
//   - Kube: a projected service-account token (audience "meridian" by
//     default), reviewed by the API server with TokenReview through
//     client-go; system:serviceaccount:NS:SA becomes spiffe://TD/ns/NS/sa/SA.
//   - JoinTokens: outside Kubernetes (VMs, bare processes, a new cluster
//     asking for its intermediate), a single-use, expiring token minted by
//     an operator and bound to one ID. Tokens are kept in etcd as hashes and
//     redeemed in a transaction, so a replay is refused on every replica.
//
// Refusals are *trust.RefusedError (reasons: malformed, forged, replayed,
// expired, unauthenticated, audience, not_service_account, trust_domain),
// counted here in meridian_trust_attestation_refused_total{method,reason}
// and returned; the server edge logs them. Whether the ID then matches what
// the caller asks for is the caller's check (package casvc), and the CSR's
// content the CA's (package ca).
//
// Local processes on the Workload API socket are attested differently, by
// their peer credentials; see package workloadapi.
package attest
