// Package authz decides who may call a workload: AuthorizationPolicy
// objects (api/v1alpha1) compiled for one workload into Policies, evaluated
// in Go by meridian-proxy (Authorize) and translated to Envoy's RBAC filters
// (RBAC, HTTPFilters), so that both data planes enforce the same thing —
// TestEnvoyRBACMeansTheSame runs thousands of requests through the Go
// evaluator and through an interpreter of the generated RBAC config and
// requires every decision to agree.
//
// Semantics are Istio's: DENY policies first; then, when ALLOW policies
// apply, a request must match one of their rules; with none, it is allowed.
// A policy applies by namespace and label selector, and a selector-less
// policy in meridian-system applies mesh-wide (Applies).
//
// Sources are checked by SPIFFE ID, not by certificate chain alone: the
// peer's ID (exact, "*", prefix or suffix patterns), its namespace (read
// from spiffe://TD/ns/NS/sa/SA), the cluster whose intermediate issued its
// certificate (PeerFromChain, from a go-spiffe tlsconfig authorizer), and
// the end user's request principal from a JWT (package jwt). Operations
// are HTTP methods and paths, conditions request headers.
//
// Where Envoy sees less, and what the translation does instead:
//   - Envoy cannot read a peer's intermediate; clusters are matched with a
//     CEL condition on the leaf's subject OU, which the issuing authority
//     sets to its cluster. Only a compromised intermediate could lie there;
//     meridian-proxy, which reads the intermediate, cannot be fooled so.
//   - Envoy has no single ISSUER/SUBJECT value: requestPrincipals patterns
//     are matched issuer by issuer on the JWT filter's metadata, so a
//     suffix pattern ("*x") is matched against the principal claim alone.
//
// The package is pure: no I/O, no goroutines; enforcement (counting,
// logging, answering 403) is the data plane's.
package authz
