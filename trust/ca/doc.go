// Package ca owns the mesh's certificate authorities: the root of trust
// (generated, ECDSA P-256 by default, or imported), one intermediate per
// cluster signed by it, and the Authority with which a cluster's meridiand
// signs X.509-SVIDs.
//
//	Root (self-signed, URI spiffe://TD, pathlen 1)
//	  └─ intermediate per cluster (URI spiffe://TD/meridian/cluster/NAME,
//	     pathlen 0, name constraint: URIs in TD only)
//	       └─ X.509-SVID (URI spiffe://TD/ns/NS/sa/SA, OU=NAME, 1h by default)
//
// The Authority checks what it is asked to sign — the CSR's size, syntax,
// signature, key type, SANs and extensions, the ID's trust domain, the TTL —
// and refuses with a *trust.RefusedError whose Reason labels
// meridian_trust_csr_refused_total. It does not decide who the caller is:
// attestation (package attest) hands it an ID it has already proven.
//
// Store keeps the root and the cluster's intermediate in etcd, private keys
// sealed with AES-256-GCM (Sealer) under a key read from a file,
// MERIDIAN_TRUST_KEY or MERIDIAN_TRUST_KEY_FILE. Losing that key loses the
// CA; keep it outside etcd (a Kubernetes Secret mounted as a file works as
// the file source today; reading a Secret through the API is a follow-up).
//
// Why name constraints: an intermediate is a per-cluster key that lives on a
// server. Constraining it to URIs of the trust domain means a stolen one
// cannot mint a web server certificate or another mesh's identities. It
// cannot stop it from minting another cluster's workload identities (X.509
// cannot constrain URI paths); that is why the source cluster of a peer is
// read from its intermediate, not from its leaf (see package authz and
// package member).
//
// This package signs; it does not serve, schedule rotations or hold trust
// bundles (packages casvc, svid and bundle do).
package ca
