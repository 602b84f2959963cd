// Package authz enforces the authorization and end-user authentication
// meridian-proxy receives over xDS: Envoy's RBAC filters (HTTP and
// network) and its jwt_authn filter, as package trust translates
// AuthorizationPolicy and RequestAuthentication objects into them.
//
// RBAC: the proxy gets Envoy's RBAC configuration, not the policy objects
// (no private side channel), so it evaluates Envoy's RBAC semantics:
// ALLOW admits a request that matches a policy, DENY refuses one, LOG
// admits everything; a policy matches when one of its permissions and one
// of its principals match and its condition holds. Principals are checked
// by the peer's verified SPIFFE ID (authenticated.principal_name), JWT
// claims (the jwt_authn payload in metadata), addresses and headers. CEL
// conditions are limited to what trust emits: the peer certificate's
// subject matched by a regular expression, combined with !, && and ||.
// Anything else is refused at decode time (a NACK), so a policy is never
// half enforced. TestSameAsTrustEvaluator checks, over a grid of requests,
// that this engine fed with trust/authz.RBAC's output decides exactly as
// trust/authz.Policies.Authorize does.
//
// JWT: the jwt_authn providers are handed to trust/jwt's Authenticator
// (go-jose validation, JWKS caching, refusal reasons counted); this
// package only maps Envoy's provider fields to trust/jwt's Rules.
//
// It must not import the policy API (api/v1alpha1), trust/authz or
// Kubernetes: it works from the Envoy messages alone, so that the proxy
// links none of them (the test compares against trust/authz from a test
// file, which the binary does not link).
package authz
