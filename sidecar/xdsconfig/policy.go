package xdsconfig

import (
	"context"
	"net/http"
	"net/netip"

	rbacconfig "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
)

// AuthzInput is what an authorization decision reads about a connection
// or a request.
type AuthzInput struct {
	// PeerID is the client's SPIFFE ID from its mTLS certificate; empty on
	// plaintext connections. PeerSubject is that certificate's subject
	// (RFC 2253), which Envoy's RBAC conditions can read.
	PeerID      string
	PeerSubject string
	Source      netip.AddrPort
	Dest        netip.AddrPort
	// SNI the client asked for, if it spoke TLS.
	SNI string
	// Request is nil for connection-level (network filter) checks.
	Request *http.Request
	// RequestPrincipal is the authenticated end user ("issuer/subject"),
	// set by the JWT filter; Claims are that token's claims.
	RequestPrincipal string
	Claims           map[string]any
}

// Authorizer is a compiled RBAC policy.
type Authorizer interface {
	// Authorize reports whether the input may proceed and names the
	// policy that decided ("" when none matched). Safe for concurrent
	// use; must not block.
	Authorize(in *AuthzInput) (allowed bool, policy string)
}

// AuthzFactory compiles Envoy RBAC rules (action and policies) and the
// optional shadow rules (evaluated and logged, never enforced).
type AuthzFactory func(rules, shadow *rbacconfig.RBAC) (Authorizer, error)

// Authenticator is a compiled jwt_authn configuration.
type Authenticator interface {
	// Authenticate checks the request's tokens. It returns the principal
	// and claims of a valid token, empty ones when the request carries no
	// token and none is required, and an error when a token is invalid or
	// a required one is missing. Safe for concurrent use; may block to
	// fetch a JWKS, bounded by ctx, the request's.
	Authenticate(ctx context.Context, h http.Header) (principal string, claims map[string]any, err error)
}

// JWTFactory compiles a jwt_authn filter configuration.
type JWTFactory func(*jwtauthn.JwtAuthentication) (Authenticator, error)
