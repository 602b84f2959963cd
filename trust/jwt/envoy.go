package jwt

import (
	"fmt"
	"net"
	"net/url"
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Names shared with the RBAC translation: the JWT filter writes a validated
// token's payload into dynamic metadata FilterName/PayloadKey, where RBAC
// principals read iss and the principal claim.
const (
	FilterName = "envoy.filters.http.jwt_authn"
	PayloadKey = "jwt_payload"
)

// JWKSCluster is an upstream cluster Envoy needs to fetch a remote key set:
// the xDS server adds it (STRICT_DNS to Host:Port, with TLS when TLS is
// set) beside the listener that uses the filter.
type JWKSCluster struct {
	Name string
	Host string
	Port uint32
	TLS  bool
}

// Issuers maps every accepted issuer to its principal claim, for the RBAC
// translation of requestPrincipals.
func Issuers(rules []Rule) map[string]string {
	out := map[string]string{}
	for _, jr := range rules {
		out[jr.Issuer] = jr.principalClaim()
	}
	return out
}

// EnvoyFilter translates the rules of a workload's RequestAuthentications
// to Envoy's JWT authentication filter with the same meaning as
// Authenticator: a token, when present, must validate against one of the
// providers (one per rule, named by Rule.Name) else 401; a request without
// one passes (allow_missing). It returns nil when there is nothing to
// enforce, and the clusters remote key sets need.
func EnvoyFilter(rules []Rule) (*hcm.HttpFilter, []JWKSCluster, error) {
	cfg := &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{}}
	var reqs []*jwtauthn.JwtRequirement
	var clusters []JWKSCluster
	seen := map[string]bool{}
	for _, jr := range rules {
		name := jr.Name
		p := &jwtauthn.JwtProvider{Issuer: jr.Issuer, Audiences: jr.Audiences, PayloadInMetadata: PayloadKey, Forward: true}
		for _, h := range jr.headers() {
			p.FromHeaders = append(p.FromHeaders, &jwtauthn.JwtHeader{Name: h.Name, ValuePrefix: h.Prefix})
		}
		if jr.JWKS != "" {
			p.JwksSourceSpecifier = &jwtauthn.JwtProvider_LocalJwks{LocalJwks: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: jr.JWKS}}}
		} else {
			c, err := jwksCluster(jr.JWKSURI)
			if err != nil {
				return nil, nil, fmt.Errorf("jwt: %s: %w", name, err)
			}
			if !seen[c.Name] {
				clusters = append(clusters, c)
				seen[c.Name] = true
			}
			p.JwksSourceSpecifier = &jwtauthn.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthn.RemoteJwks{
				HttpUri: &core.HttpUri{
					Uri:              jr.JWKSURI,
					HttpUpstreamType: &core.HttpUri_Cluster{Cluster: c.Name},
					Timeout:          durationpb.New(5e9),
				},
				CacheDuration: durationpb.New(jr.cacheDuration()),
				AsyncFetch:    &jwtauthn.JwksAsyncFetch{},
			}}
		}
		cfg.Providers[name] = p
		reqs = append(reqs, &jwtauthn.JwtRequirement{RequiresType: &jwtauthn.JwtRequirement_ProviderName{ProviderName: name}})
	}
	if len(reqs) == 0 {
		return nil, nil, nil
	}
	reqs = append(reqs, &jwtauthn.JwtRequirement{RequiresType: &jwtauthn.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	cfg.Rules = []*jwtauthn.RequirementRule{{
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtauthn.RequirementRule_Requires{Requires: &jwtauthn.JwtRequirement{
			RequiresType: &jwtauthn.JwtRequirement_RequiresAny{RequiresAny: &jwtauthn.JwtRequirementOrList{Requirements: reqs}},
		}},
	}}
	if err := cfg.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("jwt: envoy filter: %w", err)
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("jwt: envoy filter: %w", err)
	}
	return &hcm.HttpFilter{Name: FilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}}, clusters, nil
}

func jwksCluster(uri string) (JWKSCluster, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return JWKSCluster{}, err
	}
	c := JWKSCluster{Host: u.Hostname(), TLS: u.Scheme == "https", Port: 80}
	if c.TLS {
		c.Port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return JWKSCluster{}, fmt.Errorf("JWKS URI port %q", p)
		}
		c.Port = uint32(n)
	}
	c.Name = "jwks|" + net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	return c, nil
}
