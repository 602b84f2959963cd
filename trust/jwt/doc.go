// Package jwt authenticates end users by JWT, per the rules of the
// RequestAuthentication objects that apply to a workload, and translates
// the same rules to Envoy's JWT authentication filter, so that
// meridian-proxy and Envoy accept and refuse the same tokens.
//
// It takes plain Rules, not the API objects: trust/authz.JWTRules converts
// RequestAuthentications on the control plane's side, sidecar/authz maps
// the jwt_authn providers the proxy gets over xDS. It must not import
// api/v1alpha1 or Kubernetes, so that meridian-proxy links it without them.
//
// Authenticator (go-jose v4) finds a token where a rule says (default
// "Authorization: Bearer"), picks the rule of its issuer and checks, in
// order: size and syntax, the algorithm (alg none and HMAC refused: only
// asymmetric signatures), the key named by kid, the signature, exp and nbf
// (one minute of leeway), and the audience. Each refusal is a
// *trust.RefusedError with its reason (malformed, alg_none, algorithm,
// issuer, unknown_kid, signature, expired, not_yet_valid, audience, jwks),
// counted in meridian_trust_jwt_refused_total. A request without a token
// is not refused: an AuthorizationPolicy asks for requestPrincipals when a
// token is required. The request principal is ISSUER/CLAIM, the claim
// being "sub" unless the rule names another.
//
// Key sets are inline or fetched over HTTP(S) and cached (5 minutes by
// default). A token naming an unknown kid refreshes the set — the issuer
// may have rotated — but at most every 30 seconds, so made-up kids cannot
// make the proxy hammer the issuer; a set that fails to refresh keeps
// being used.
//
// EnvoyFilter gives envoy.filters.http.jwt_authn with one provider per
// rule, named by Rule.Name (payload in metadata under PayloadKey, which
// the RBAC translation of package authz reads), requires_any of the
// providers or allow_missing, and the clusters the xDS server must add for
// remote key sets.
package jwt
