// Package trust is the mesh's root of trust. This package holds only the
// vocabulary its subpackages share — the SPIFFE IDs of workloads
// (spiffe://TD/ns/NS/sa/SA) and control planes
// (spiffe://TD/meridian/cluster/NAME), and RefusedError, the one shape of
// every refusal of bad input (a reason to count, a detail to log). The
// work is in the subpackages, named after the spec's nouns as go-spiffe's
// are:
//
//	ca              root, per-cluster intermediates, SVID signing with CSR checks, sealed keys in etcd
//	attest          who is asking: service-account TokenReview, single-use join tokens
//	casvc           the CA over HTTPS: CSR + token → SVID; join token or member cert → intermediate
//	svid            holding SVIDs: Manager (mint + rotate at half life), Rotator (own key, by CSR)
//	bundle          trusted roots per trust domain; signed updates and their convergent merge
//	bundleendpoint  SPIFFE federation bundle endpoint, served and watched
//	sds             Envoy Secrets and transport sockets over ADS; parse-back for meridian-proxy
//	workloadapi     SPIFFE Workload API on a Unix socket, peer-credential attestation
//	mtls            STRICT/PERMISSIVE per PeerAuthentication; SPIFFE-ID-checked TLS; the listener
//	authz           AuthorizationPolicy: Go evaluator and Envoy RBAC, proven to agree
//	jwt             RequestAuthentication: go-jose validation with cached JWKS; Envoy jwt_authn
//	member          a control plane's identity among its peers (federation's hooks)
//	service         all of it assembled for meridiand
//
// How an identity travels:
//
//	meridianctl trust init ──► root ──issue-intermediate / join token──► cluster intermediate
//	                                                                        │ ca.Authority
//	  pod token ──TokenReview─┐                                             ▼
//	  join token ─────────────┼──► attest ──► casvc ──CSR──► SVID ◄── svid.Manager (mint, ½-life)
//	  process uid ──SO_PEERCRED────────────────────────► workloadapi ◄──┤
//	                                                     sds.Provider ◄──┘ ──► xDS ──► proxies
//	  bundle.Source ◄── bundle.Merge(signed update) ◄── federation gossip
//	                ◄── bundleendpoint.Watch ◄── foreign trust domains
//	  peers ──► mtls (mode, SPIFFE ID) ──► authz (+ jwt) ──► allow / deny
//
// Departures from DESIGN.md, and why:
//   - Bundle updates are signed by a root the receiver already trusts:
//     gossip is how bundles travel, and an unsigned bundle would let any
//     member add a root for everyone.
//   - A peer's cluster is read from its issuing intermediate, not from
//     anything in its leaf certificate: every intermediate can sign any URI
//     of the trust domain (X.509 name constraints cannot restrict paths).
//   - Root rotation is three explicit steps with waits between them, not an
//     automatic process: the waits depend on the mesh (gossip reach, SVID
//     TTLs) and an operator should see each step happen.
package trust
