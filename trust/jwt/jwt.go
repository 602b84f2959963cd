package jwt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
)

// Refusal reasons, the "reason" label of meridian_trust_jwt_refused_total.
const (
	ReasonMalformed   = "malformed"     // not a compact JWS, or oversized
	ReasonAlgNone     = "alg_none"      // unsigned token
	ReasonAlgorithm   = "algorithm"     // HMAC or another algorithm not accepted
	ReasonIssuer      = "issuer"        // no RequestAuthentication accepts its issuer
	ReasonUnknownKID  = "unknown_kid"   // the issuer's key set has no such key, even refreshed
	ReasonSignature   = "signature"     // signature does not verify
	ReasonExpired     = "expired"       // exp in the past
	ReasonNotYetValid = "not_yet_valid" // nbf in the future
	ReasonAudience    = "audience"      // aud holds none of the accepted audiences
	ReasonJWKS        = "jwks"          // the issuer's key set cannot be fetched
)

// MaxTokenSize bounds a token before it is parsed.
const MaxTokenSize = 16 << 10

// Leeway on exp and nbf for clock skew, as most JWT validators allow.
const Leeway = time.Minute

// accepted are the asymmetric algorithms: a symmetric (HS*) token would
// need the shared secret on every proxy, and "none" is no signature.
var accepted = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// Authenticator validates end-user JWTs for one workload, per the
// RequestAuthentications that apply to it. Safe for concurrent use.
type Authenticator struct {
	rules   []*rule
	now     func() time.Time
	refused *prometheus.CounterVec
}

type rule struct {
	issuer    string
	audiences []string
	headers   []Header
	claim     string
	keys      *keySet
}

// Rule is one accepted issuer: a jwtRule of a RequestAuthentication
// (trust/authz.JWTRules converts them) or a provider of Envoy's jwt_authn
// filter (as meridian-proxy gets it over xDS). The package takes these
// plain values rather than the API objects so that the proxy links it
// without the control plane's API.
type Rule struct {
	// Name says where the rule comes from ("NAMESPACE/NAME[INDEX]"); it
	// names the rule in errors and its provider in Envoy's filter.
	Name string
	// Issuer must equal the token's iss claim.
	Issuer string
	// Audiences: the token's aud must contain one of them; empty accepts
	// any audience.
	Audiences []string
	// JWKS is the issuer's key set inline (JSON); exactly one of JWKS and
	// JWKSURI.
	JWKS    string
	JWKSURI string
	// CacheDuration is how long a fetched key set is used; 0 means
	// DefaultCacheDuration.
	CacheDuration time.Duration
	// FromHeaders say where the token is; empty means "Authorization"
	// with prefix "Bearer ".
	FromHeaders []Header
	// PrincipalClaim makes the request principal ISSUER/VALUE; "" means
	// "sub".
	PrincipalClaim string
}

// Header is a header carrying a token, after an optional prefix.
type Header struct {
	Name, Prefix string
}

// Config configures New.
type Config struct {
	// Rules of the RequestAuthentications that apply to the workload.
	Rules []Rule
	// HTTPClient fetches remote key sets; default a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer receives meridian_trust_jwt_refused_total{reason}.
	Registerer prometheus.Registerer
}

// New compiles the rules. Inline key sets are parsed now: a bad one is an
// error naming the object.
func New(cfg Config) (*Authenticator, error) {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	a := &Authenticator{now: now, refused: metrics.CounterVec(cfg.Registerer, prometheus.CounterOpts{
		Name: "meridian_trust_jwt_refused_total", Help: "End-user JWTs refused, by reason.",
	}, "reason")}
	issuers := map[string]bool{}
	for _, jr := range cfg.Rules {
		if err := jr.check(issuers); err != nil {
			return nil, fmt.Errorf("jwt: rule %s: %w", jr.Name, err)
		}
		ks, err := newKeySet(jr, hc, now)
		if err != nil {
			return nil, fmt.Errorf("jwt: rule %s: issuer %s: %w", jr.Name, jr.Issuer, err)
		}
		a.rules = append(a.rules, &rule{issuer: jr.Issuer, audiences: jr.Audiences, headers: jr.headers(), claim: jr.principalClaim(), keys: ks})
	}
	return a, nil
}

// check refuses a rule the Authenticator cannot apply as Envoy would. The
// API checks RequestAuthentications on admission; this guards what
// arrives over xDS.
func (jr Rule) check(issuers map[string]bool) error {
	switch {
	case jr.Issuer == "":
		return errors.New("issuer is required")
	case issuers[jr.Issuer]:
		return fmt.Errorf("issuer %s: listed twice", jr.Issuer)
	case (jr.JWKS == "") == (jr.JWKSURI == ""):
		return errors.New("exactly one of jwks and jwksUri")
	case jr.CacheDuration < 0:
		return fmt.Errorf("cache duration %s: must not be negative", jr.CacheDuration)
	}
	issuers[jr.Issuer] = true
	if jr.JWKSURI != "" {
		if u, err := url.Parse(jr.JWKSURI); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("jwksUri %q: want an http(s) URL", jr.JWKSURI)
		}
	}
	for _, h := range jr.FromHeaders {
		if !httpguts.ValidHeaderFieldName(h.Name) {
			return fmt.Errorf("fromHeaders: %q is not an HTTP header name", h.Name)
		}
	}
	return nil
}

// headers is where the rule looks for tokens: its FromHeaders, or
// "Authorization: Bearer ".
func (jr Rule) headers() []Header {
	if len(jr.FromHeaders) > 0 {
		return jr.FromHeaders
	}
	return []Header{{Name: "Authorization", Prefix: "Bearer "}}
}

// principalClaim is the claim that makes the request principal; default
// "sub".
func (jr Rule) principalClaim() string {
	if jr.PrincipalClaim != "" {
		return jr.PrincipalClaim
	}
	return "sub"
}

// Result is an authenticated end user.
type Result struct {
	// Principal is ISSUER/CLAIM (the rule's principal claim, "sub" by
	// default); "" for a request without a token.
	Principal string
	Issuer    string
	Claims    map[string]any
}

// Authenticate looks for a token where the rules say, and validates it
// against the rule of its issuer. No token is not an error (Result is
// empty: an AuthorizationPolicy decides whether one is required); a bad
// token is a *trust.RefusedError, counted.
func (a *Authenticator) Authenticate(ctx context.Context, h http.Header) (Result, error) {
	tok, ok := a.token(h)
	if !ok {
		return Result{}, nil
	}
	res, err := a.validate(ctx, tok)
	if r, ok := errors.AsType[*trust.RefusedError](err); ok {
		a.refused.WithLabelValues(r.Reason).Inc()
	}
	if err != nil {
		return Result{}, fmt.Errorf("jwt: %w", err)
	}
	return res, nil
}

func (a *Authenticator) token(h http.Header) (string, bool) {
	for _, r := range a.rules {
		for _, src := range r.headers {
			if v := h.Get(src.Name); v != "" {
				if t, ok := strings.CutPrefix(v, src.Prefix); ok {
					return strings.TrimSpace(t), true
				}
			}
		}
	}
	return "", false
}

func (a *Authenticator) validate(ctx context.Context, tok string) (Result, error) {
	if len(tok) > MaxTokenSize {
		return Result{}, trust.Refuse(ReasonMalformed, "token of %d bytes exceeds %d", len(tok), MaxTokenSize)
	}
	alg, err := headerAlg(tok)
	if err != nil {
		return Result{}, err
	}
	parsed, err := josejwt.ParseSigned(tok, accepted)
	if err != nil {
		return Result{}, trust.Refuse(ReasonMalformed, "token does not parse: %v", err)
	}
	var unverified josejwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Result{}, trust.Refuse(ReasonMalformed, "claims do not parse: %v", err)
	}
	i := slices.IndexFunc(a.rules, func(r *rule) bool { return r.issuer == unverified.Issuer })
	if i < 0 {
		return Result{}, trust.Refuse(ReasonIssuer, "no rule accepts issuer %q", unverified.Issuer)
	}
	r := a.rules[i]
	kid := parsed.Headers[0].KeyID
	key, err := r.keys.find(ctx, kid, alg)
	if err != nil {
		return Result{}, err
	}
	var claims josejwt.Claims
	var all map[string]any
	if err := parsed.Claims(key.Key, &claims, &all); err != nil {
		return Result{}, trust.Refuse(ReasonSignature, "signature by key %q does not verify: %v", kid, err)
	}
	now := a.now()
	if claims.Expiry != nil && now.After(claims.Expiry.Time().Add(Leeway)) {
		return Result{}, trust.Refuse(ReasonExpired, "token expired at %s", claims.Expiry.Time().Format(time.RFC3339))
	}
	if claims.NotBefore != nil && now.Add(Leeway).Before(claims.NotBefore.Time()) {
		return Result{}, trust.Refuse(ReasonNotYetValid, "token not valid before %s", claims.NotBefore.Time().Format(time.RFC3339))
	}
	if len(r.audiences) > 0 && !slices.ContainsFunc(r.audiences, claims.Audience.Contains) {
		return Result{}, trust.Refuse(ReasonAudience, "token audiences %v, want one of %v", []string(claims.Audience), r.audiences)
	}
	res := Result{Issuer: r.issuer, Claims: all}
	if v, ok := all[r.claim].(string); ok && v != "" {
		res.Principal = r.issuer + "/" + v
	}
	return res, nil
}

// headerAlg reads the protected header before go-jose does, so that an
// unsigned or HMAC token is refused with its own reason rather than a parse
// error.
func headerAlg(tok string) (string, error) {
	head, _, ok := strings.Cut(tok, ".")
	if !ok {
		return "", trust.Refuse(ReasonMalformed, "not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", trust.Refuse(ReasonMalformed, "header is not base64url: %v", err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", trust.Refuse(ReasonMalformed, "header is not JSON: %v", err)
	}
	switch {
	case strings.EqualFold(h.Alg, "none"):
		return "", trust.Refuse(ReasonAlgNone, "unsigned token (alg none)")
	case !slices.Contains(accepted, jose.SignatureAlgorithm(h.Alg)):
		return "", trust.Refuse(ReasonAlgorithm, "algorithm %q is not accepted (asymmetric signatures only)", h.Alg)
	}
	return h.Alg, nil
}
