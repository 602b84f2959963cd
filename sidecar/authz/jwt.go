package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

// JWT returns a factory of jwt_authn filters backed by trust/jwt's
// Authenticator; its refusal counters go to reg.
func JWT(reg prometheus.Registerer) xdsconfig.JWTFactory {
	return func(cfg *jwtauthn.JwtAuthentication) (xdsconfig.Authenticator, error) {
		return compileJWT(cfg, reg)
	}
}

// authenticator applies trust's Authenticator with the filter's
// requirement: a token, when present, must validate; a missing one passes
// only when the requirement allows it (allow_missing).
type authenticator struct {
	a            *jwt.Authenticator
	allowMissing bool
}

// Authenticate implements xdsconfig.Authenticator.
func (a *authenticator) Authenticate(ctx context.Context, h http.Header) (string, map[string]any, error) {
	res, err := a.a.Authenticate(ctx, h)
	if err != nil {
		return "", nil, err
	}
	if res.Principal == "" && !a.allowMissing {
		return "", nil, errors.New("Jwt is missing") //lint:ignore ST1005 Envoy's own response text, which clients match
	}
	return res.Principal, res.Claims, nil
}

// compileJWT maps the filter's providers to trust's JWT rules. The shapes
// trust emits (every provider listed in one requires_any, with or without
// allow_missing, applying to every path) are accepted; per-route rules and
// other requirement trees are refused, not approximated.
func compileJWT(cfg *jwtauthn.JwtAuthentication, reg prometheus.Registerer) (*authenticator, error) {
	names := make([]string, 0, len(cfg.GetProviders()))
	for n := range cfg.GetProviders() {
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, errors.New("jwt: no providers")
	}
	slices.Sort(names)
	rules := make([]jwt.Rule, 0, len(names))
	for _, n := range names {
		p := cfg.GetProviders()[n]
		jr := jwt.Rule{Name: n, Issuer: p.GetIssuer(), Audiences: p.GetAudiences()}
		switch src := p.GetJwksSourceSpecifier().(type) {
		case *jwtauthn.JwtProvider_LocalJwks:
			b, err := inlineData(src.LocalJwks.GetInlineString(), src.LocalJwks.GetInlineBytes())
			if err != nil {
				return nil, fmt.Errorf("jwt: provider %s: local_jwks: %w", n, err)
			}
			jr.JWKS = b
		case *jwtauthn.JwtProvider_RemoteJwks:
			jr.JWKSURI = src.RemoteJwks.GetHttpUri().GetUri()
			if d := src.RemoteJwks.GetCacheDuration(); d != nil {
				if jr.CacheDuration = d.AsDuration(); jr.CacheDuration <= 0 {
					return nil, fmt.Errorf("jwt: provider %s: cache_duration %s: must be positive", n, jr.CacheDuration)
				}
			}
		default:
			return nil, fmt.Errorf("jwt: provider %s: no key set", n)
		}
		for _, h := range p.GetFromHeaders() {
			jr.FromHeaders = append(jr.FromHeaders, jwt.Header{Name: h.GetName(), Prefix: h.GetValuePrefix()})
		}
		if len(p.GetFromParams()) > 0 || len(p.GetFromCookies()) > 0 {
			return nil, fmt.Errorf("jwt: provider %s: tokens in query parameters or cookies are not supported", n)
		}
		rules = append(rules, jr)
	}
	allowMissing, err := requirement(cfg)
	if err != nil {
		return nil, err
	}
	a, err := jwt.New(jwt.Config{Rules: rules, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return &authenticator{a: a, allowMissing: allowMissing}, nil
}

func inlineData(s string, b []byte) (string, error) {
	switch {
	case s != "":
		return s, nil
	case len(b) > 0:
		return string(b), nil
	}
	return "", errors.New("only inline data is accepted over xDS")
}

// requirement reads the filter's rules: one rule for every path, requiring
// any provider, optionally allowing a missing token.
func requirement(cfg *jwtauthn.JwtAuthentication) (allowMissing bool, err error) {
	rules := cfg.GetRules()
	if len(rules) == 0 {
		return true, nil
	}
	if len(rules) > 1 || rules[0].GetMatch().GetPrefix() != "/" {
		return false, errors.New("jwt: only one rule for every path (prefix /) is supported")
	}
	req := rules[0].GetRequires()
	var reqs []*jwtauthn.JwtRequirement
	switch {
	case req.GetRequiresAny() != nil:
		reqs = req.GetRequiresAny().GetRequirements()
	case req.GetProviderName() != "":
		reqs = []*jwtauthn.JwtRequirement{req}
	default:
		return false, errors.New("jwt: requirements other than provider_name and requires_any are not supported")
	}
	for _, r := range reqs {
		switch {
		case r.GetAllowMissing() != nil, r.GetAllowMissingOrFailed() != nil:
			allowMissing = true
		case r.GetProviderName() != "":
			if _, ok := cfg.GetProviders()[r.GetProviderName()]; !ok {
				return false, fmt.Errorf("jwt: requirement names unknown provider %q", r.GetProviderName())
			}
		default:
			return false, errors.New("jwt: nested requirements are not supported")
		}
	}
	return allowMissing, nil
}
