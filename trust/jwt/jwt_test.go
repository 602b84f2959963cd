package jwt_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

const issuer = "https://id.example"

type signer struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

func newSigner(t testing.TB, kid string, rsaKey bool) signer {
	t.Helper()
	if rsaKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return signer{kid, k, jose.RS256}
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return signer{kid, k, jose.ES256}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

func jwks(t testing.TB, ss ...signer) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range ss {
		set.Keys = append(set.Keys, s.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type claims struct {
	josejwt.Claims
	Email string `json:"email,omitempty"`
}

func (s signer) token(t testing.TB, c claims) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func good(now time.Time) claims {
	return claims{Claims: josejwt.Claims{Issuer: issuer, Subject: "alice", Audience: josejwt.Audience{"shop"},
		Expiry: josejwt.NewNumericDate(now.Add(time.Hour)), NotBefore: josejwt.NewNumericDate(now.Add(-time.Minute))}, Email: "alice@example.com"}
}

// rules names rules as trust/authz.JWTRules names those of a
// RequestAuthentication shop/users.
func rules(rs ...jwt.Rule) []jwt.Rule {
	for i := range rs {
		rs[i].Name = fmt.Sprintf("shop/users[%d]", i)
	}
	return rs
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func unsigned(t testing.TB, header string, c claims) string {
	body, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

func TestAuthenticateInlineJWKS(t *testing.T) {
	now := time.Now()
	es, rs, other := newSigner(t, "k1", false), newSigner(t, "r1", true), newSigner(t, "k1", false)
	reg := prometheus.NewRegistry()
	a, err := jwt.New(jwt.Config{Rules: rules(
		jwt.Rule{Issuer: issuer, Audiences: []string{"shop"}, JWKS: jwks(t, es, rs)},
		jwt.Rule{Issuer: "mail", JWKS: jwks(t, es), PrincipalClaim: "email", FromHeaders: []jwt.Header{{Name: "X-Token"}}},
	), Registerer: reg, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for name, tok := range map[string]string{"ES256": es.token(t, good(now)), "RS256": rs.token(t, good(now))} {
		res, err := a.Authenticate(ctx, bearer(tok))
		if err != nil || res.Principal != issuer+"/alice" {
			t.Fatalf("%s: %+v %v", name, res, err)
		}
	}
	mail := good(now)
	mail.Issuer, mail.Audience = "mail", nil
	res, err := a.Authenticate(ctx, http.Header{"X-Token": {es.token(t, mail)}})
	if err != nil || res.Principal != "mail/alice@example.com" {
		t.Fatalf("principal claim: %+v %v", res, err)
	}
	if res, err := a.Authenticate(ctx, http.Header{}); err != nil || res.Principal != "" {
		t.Fatalf("no token: %+v %v", res, err)
	}

	hs := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
		tok, _ := josejwt.Signed(s).Claims(good(now)).Serialize()
		return tok
	}()
	mutate := func(f func(*claims)) string { c := good(now); f(&c); return es.token(t, c) }
	tampered := es.token(t, good(now))
	tampered = tampered[:len(tampered)-4] + "AAAA"
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"alg none", unsigned(t, `{"alg":"none","typ":"JWT"}`, good(now)), jwt.ReasonAlgNone},
		{"alg NONE", unsigned(t, `{"alg":"NONE"}`, good(now)), jwt.ReasonAlgNone},
		{"HMAC", hs, jwt.ReasonAlgorithm},
		{"wrong audience", mutate(func(c *claims) { c.Audience = josejwt.Audience{"billing"} }), jwt.ReasonAudience},
		{"no audience", mutate(func(c *claims) { c.Audience = nil }), jwt.ReasonAudience},
		{"expired", mutate(func(c *claims) { c.Expiry = josejwt.NewNumericDate(now.Add(-2 * time.Minute)) }), jwt.ReasonExpired},
		{"not yet valid", mutate(func(c *claims) { c.NotBefore = josejwt.NewNumericDate(now.Add(2 * time.Minute)) }), jwt.ReasonNotYetValid},
		{"unknown kid", newSigner(t, "k9", false).token(t, good(now)), jwt.ReasonUnknownKID},
		{"unknown issuer", mutate(func(c *claims) { c.Issuer = "https://evil.example" }), jwt.ReasonIssuer},
		{"signed by another key with the same kid", other.token(t, good(now)), jwt.ReasonSignature},
		{"tampered signature", tampered, jwt.ReasonSignature},
		{"garbage", "not.a.jwt", jwt.ReasonMalformed},
		{"no dots", "abc", jwt.ReasonMalformed},
		{"oversized", strings.Repeat("a", jwt.MaxTokenSize+1), jwt.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := trusttest.Count(t, reg, "meridian_trust_jwt_refused_total", "reason", tc.reason)
			_, err := a.Authenticate(ctx, bearer(tc.token))
			r, ok := errors.AsType[*trust.RefusedError](err)
			if !ok || r.Reason != tc.reason || !strings.HasPrefix(err.Error(), "jwt: refused") {
				t.Fatalf("got %v, want refusal %q", err, tc.reason)
			}
			if after := trusttest.Count(t, reg, "meridian_trust_jwt_refused_total", "reason", tc.reason); after != before+1 {
				t.Fatalf("not counted: %v -> %v", before, after)
			}
		})
	}
	// Within the leeway for clock skew.
	if _, err := a.Authenticate(ctx, bearer(mutate(func(c *claims) { c.Expiry = josejwt.NewNumericDate(now.Add(-30 * time.Second)) }))); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
}

// A remote key set: fetched once and cached, refreshed when a token names a
// new key (key rotation at the issuer), but not more than every 30s however
// many unknown kids arrive; a key set that cannot be fetched refuses with
// its own reason, and one fetched before stays in use when the issuer is
// down.
func TestRemoteJWKS(t *testing.T) {
	k1, k2 := newSigner(t, "k1", false), newSigner(t, "k2", false)
	var mu sync.Mutex
	served, down := jwks(t, k1), true
	var fetches atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(served))
	}))
	defer srv.Close()
	var clock atomic.Int64
	start := time.Now()
	now := func() time.Time { return start.Add(time.Duration(clock.Load())) }
	a, err := jwt.New(jwt.Config{Rules: rules(
		jwt.Rule{Issuer: issuer, JWKSURI: srv.URL + "/jwks"},
	), HTTPClient: srv.Client(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(tok, reason string) {
		t.Helper()
		_, err := a.Authenticate(ctx, bearer(tok))
		if reason == "" {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if r, ok := errors.AsType[*trust.RefusedError](err); !ok || r.Reason != reason {
			t.Fatalf("got %v, want %s", err, reason)
		}
	}
	check(k1.token(t, good(now())), jwt.ReasonJWKS)
	mu.Lock()
	down = false
	mu.Unlock()
	clock.Add(int64(time.Minute))
	for range 5 {
		check(k1.token(t, good(now())), "")
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (one failed, one cached)", n)
	}
	// The issuer rotates to k2: the unknown kid triggers a refresh.
	mu.Lock()
	served = jwks(t, k1, k2)
	mu.Unlock()
	clock.Add(int64(time.Minute))
	check(k2.token(t, good(now())), "")
	// A flood of made-up kids: one refresh at most per 30s.
	before := fetches.Load()
	for i := range 20 {
		check(newSigner(t, "x"+string(rune('a'+i)), false).token(t, good(now())), jwt.ReasonUnknownKID)
	}
	if n := fetches.Load() - before; n > 1 {
		t.Fatalf("%d fetches for unknown kids within 30s", n)
	}
	// The issuer goes down after the cache expired: the old keys still work.
	mu.Lock()
	down = true
	mu.Unlock()
	clock.Add(int64(10 * time.Minute))
	check(k2.token(t, good(now())), "")
}

func TestNewRefusesBadRules(t *testing.T) {
	es := newSigner(t, "k1", false)
	for name, rs := range map[string][]jwt.Rule{
		"no key set":        rules(jwt.Rule{Issuer: issuer}),
		"two key sets":      rules(jwt.Rule{Issuer: issuer, JWKS: jwks(t, es), JWKSURI: "https://id.example/jwks"}),
		"no issuer":         rules(jwt.Rule{JWKS: jwks(t, es)}),
		"issuer twice":      rules(jwt.Rule{Issuer: issuer, JWKS: jwks(t, es)}, jwt.Rule{Issuer: issuer, JWKSURI: "https://id.example/jwks"}),
		"inline JWKS":       rules(jwt.Rule{Issuer: issuer, JWKS: `{"keys":[{"kty":"nope"}]}`}),
		"empty JWKS":        rules(jwt.Rule{Issuer: issuer, JWKS: `{"keys":[]}`}),
		"JWKS URI":          rules(jwt.Rule{Issuer: issuer, JWKSURI: "ftp://id.example/jwks"}),
		"negative cache":    rules(jwt.Rule{Issuer: issuer, JWKSURI: "https://id.example/jwks", CacheDuration: -time.Second}),
		"bad header name":   rules(jwt.Rule{Issuer: issuer, JWKS: jwks(t, es), FromHeaders: []jwt.Header{{Name: "x token"}}}),
		"empty header name": rules(jwt.Rule{Issuer: issuer, JWKS: jwks(t, es), FromHeaders: []jwt.Header{{}}}),
	} {
		_, err := jwt.New(jwt.Config{Rules: rs})
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "shop/users[") {
			t.Errorf("%s: error %q does not name the rule", name, err)
		}
	}
}

func TestEnvoyFilter(t *testing.T) {
	es := newSigner(t, "k1", false)
	f, clusters, err := jwt.EnvoyFilter(rules(
		jwt.Rule{Issuer: issuer, Audiences: []string{"shop"}, JWKSURI: "https://id.example/.well-known/jwks.json", CacheDuration: time.Minute},
		jwt.Rule{Issuer: "local", JWKS: jwks(t, es), FromHeaders: []jwt.Header{{Name: "x-token"}}},
	))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != jwt.FilterName || len(clusters) != 1 || clusters[0] != (jwt.JWKSCluster{Name: "jwks|id.example:443", Host: "id.example", Port: 443, TLS: true}) {
		t.Fatalf("filter %s, clusters %+v", f.Name, clusters)
	}
	var cfg jwtauthn.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) != 2 || cfg.Providers["shop/users[0]"].GetRemoteJwks().GetHttpUri().GetCluster() != "jwks|id.example:443" ||
		cfg.Providers["shop/users[0]"].PayloadInMetadata != jwt.PayloadKey || cfg.Providers["shop/users[1]"].FromHeaders[0].Name != "x-token" {
		t.Fatalf("providers %v", cfg.Providers)
	}
	reqs := cfg.Rules[0].GetRequires().GetRequiresAny().GetRequirements()
	if len(reqs) != 3 || reqs[2].GetAllowMissing() == nil {
		t.Fatalf("requirements %v", reqs)
	}
	if f, _, err := jwt.EnvoyFilter(nil); f != nil || err != nil {
		t.Fatal("a filter for nothing")
	}
	if got := jwt.Issuers(rules(jwt.Rule{Issuer: "a", PrincipalClaim: "email"}, jwt.Rule{Issuer: "b"})); got["a"] != "email" || got["b"] != "sub" {
		t.Fatalf("issuers %v", got)
	}
}

// FuzzAuthenticate: no token crashes the authenticator; whatever it
// accepts was signed by the configured key for the configured issuer.
func FuzzAuthenticate(f *testing.F) {
	now := time.Now()
	es := newSigner(f, "k1", false)
	f.Add(es.token(f, good(now)))
	f.Add(unsigned(f, `{"alg":"none"}`, good(now)))
	f.Add("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.e30.AAAA")
	f.Add("..")
	a, err := jwt.New(jwt.Config{Rules: rules(
		jwt.Rule{Issuer: issuer, Audiences: []string{"shop"}, JWKS: jwks(f, es)},
	), Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		res, err := a.Authenticate(context.Background(), bearer(tok))
		if err != nil {
			if _, ok := errors.AsType[*trust.RefusedError](err); !ok {
				t.Fatalf("not a refusal: %v", err)
			}
			return
		}
		if strings.TrimSpace(tok) != "" && res.Issuer != issuer {
			t.Fatalf("accepted a token of issuer %q", res.Issuer)
		}
	})
}
