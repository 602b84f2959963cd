package authz_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/sidecar/authz"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
	trustauthz "github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

// policies exercise every kind of match trust's translation emits:
// principals with wildcards, namespaces, clusters (a CEL condition on the
// peer's subject), request principals (JWT metadata), methods, paths and
// not-paths, header conditions, ALLOW and DENY.
const policies = `
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from:
    - principals: ["spiffe://mesh.test/ns/shop/*"]
    to:
    - methods: [GET, HEAD]
      paths: ["/api/*", /healthz]
  - from:
    - namespaces: [checkout]
      clusters: [eks-euw1, "onprem-*"]
    to:
    - methods: [POST]
      notPaths: ["/api/admin*"]
  - from:
    - requestPrincipals: ["https://id.example/*"]
    when:
    - header: x-tenant
      values: [acme, "beta-*"]
---
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-legacy, namespace: meridian-system}
spec:
  action: DENY
  rules:
  - from:
    - principals: ["*-legacy"]
  - from:
    - notNamespaces: [shop, checkout]
      principals: ["*"]
    to:
    - paths: ["/api/*"]
---
apiVersion: meridian.io/v1alpha1
kind: RequestAuthentication
metadata: {name: users, namespace: shop}
spec:
  jwtRules:
  - issuer: https://id.example
    jwksUri: https://id.example/jwks
  - issuer: mail
    jwksUri: https://mail.example/jwks
    principalClaim: email
`

// engines compiles the RBAC filters of an HTTP filter list, in order.
func engines(t *testing.T, filters []*hcm.HttpFilter) []xdsconfig.Authorizer {
	t.Helper()
	var out []xdsconfig.Authorizer
	for _, f := range filters {
		if f.Name != trustauthz.RBACFilterName {
			continue
		}
		var cfg rbachttp.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			t.Fatal(err)
		}
		e, err := authz.Compile(cfg.GetRules(), cfg.GetShadowRules())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestSameAsTrustEvaluator: fed with trust's own RBAC translation, the
// engine decides every request of a grid exactly as trust's evaluator.
func TestSameAsTrustEvaluator(t *testing.T) {
	objs, err := v1alpha1.Load([]byte(policies), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := trustauthz.Workload{Namespace: "shop", Labels: map[string]string{"app": "web"}}
	ps, err := trustauthz.Compile(objs, w)
	if err != nil {
		t.Fatal(err)
	}
	ras := trustauthz.SelectRequestAuthentications(objs, w)
	filters, err := trustauthz.RBAC(ps, jwt.Issuers(trustauthz.JWTRules(ras)))
	if err != nil {
		t.Fatal(err)
	}
	es := engines(t, filters)
	if len(es) != 2 {
		t.Fatalf("%d RBAC filters, want DENY and ALLOW", len(es))
	}
	type user struct{ iss, claim, value string }
	n, allows, disagree := 0, 0, 0
	for _, id := range []string{"", "spiffe://mesh.test/ns/shop/sa/frontend", "spiffe://mesh.test/ns/checkout/sa/cart", "spiffe://mesh.test/ns/batch/sa/job", "spiffe://mesh.test/ns/shop/sa/web-legacy"} {
		for _, cluster := range []string{"", "eks-euw1", "onprem-dc1", "eks-use1"} {
			if id == "" && cluster != "" {
				continue
			}
			for _, method := range []string{"GET", "POST", "DELETE"} {
				for _, path := range []string{"/api/items?q=1", "/api/admin/x", "/healthz", "/"} {
					for _, tenant := range []string{"", "acme", "beta-7", "evil"} {
						for _, u := range []user{{}, {"https://id.example", "sub", "alice"}, {"mail", "email", "bob@x"}} {
							req := trustauthz.Request{Method: method, Path: path, Headers: http.Header{}}
							hr := httptest.NewRequest(method, path, nil)
							in := &xdsconfig.AuthzInput{Request: hr}
							if id != "" {
								req.Peer = trustauthz.Peer{ID: spiffeid.RequireFromString(id), Cluster: cluster}
								in.PeerID, in.PeerSubject = id, "O=Meridian"
								if cluster != "" {
									in.PeerSubject = "OU=" + cluster + ",O=Meridian"
								}
							}
							if tenant != "" {
								req.Headers.Set("X-Tenant", tenant)
								hr.Header.Set("X-Tenant", tenant)
							}
							if u.iss != "" {
								req.RequestPrincipal = u.iss + "/" + u.value
								in.RequestPrincipal = req.RequestPrincipal
								in.Claims = map[string]any{"iss": u.iss, u.claim: u.value}
							}
							want := ps.Authorize(req).Allow
							got := true
							for _, e := range es {
								if ok, _ := e.Authorize(in); !ok {
									got = false
								}
							}
							n++
							if got {
								allows++
							}
							if got != want {
								disagree++
								if disagree < 5 {
									t.Errorf("%s %s peer %q cluster %q tenant %q user %q: trust %v, meridian-proxy %v", method, path, id, cluster, tenant, req.RequestPrincipal, want, got)
								}
							}
						}
					}
				}
			}
		}
	}
	if disagree > 0 || allows == 0 || allows == n {
		t.Fatalf("%d of %d decisions differ (%d allowed)", disagree, n, allows)
	}
	t.Logf("%d requests, %d allowed, every decision the same as trust's evaluator", n, allows)
}

func TestCompileRefusesWhatItCannotEnforce(t *testing.T) {
	for _, tc := range []struct {
		rules *rbacv3.RBAC
		want  string
	}{
		{&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Metadata{}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}}, "permission"},
		{&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_FilterState{}}},
		}}}, "principal"},
	} {
		if _, err := authz.Compile(tc.rules, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile = %v, want an error about the %s", err, tc.want)
		}
	}
	e, err := authz.Compile(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.Authorize(&xdsconfig.AuthzInput{}); !ok {
		t.Fatal("no rules must allow")
	}
}

// TestJWTFromTrustsFilter: trust's jwt_authn translation maps back to
// trust's Authenticator; a missing token passes (allow_missing), a bad
// one is refused and counted.
func TestJWTFromTrustsFilter(t *testing.T) {
	ra := &v1alpha1.RequestAuthentication{}
	ra.Name, ra.Namespace = "users", "shop"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	ra.Spec.JWTRules = []v1alpha1.JWTRule{{Issuer: "https://id.example", JWKS: string(jwks)}}
	f, _, err := jwt.EnvoyFilter(trustauthz.JWTRules([]*v1alpha1.RequestAuthentication{ra}))
	if err != nil {
		t.Fatal(err)
	}
	var cfg jwtauthn.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a, err := authz.JWT(reg)(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	if p, _, err := a.Authenticate(r.Context(), r.Header); err != nil || p != "" {
		t.Fatalf("no token: %q %v", p, err)
	}
	r.Header.Set("Authorization", "Bearer not.a.jwt")
	if _, _, err := a.Authenticate(r.Context(), r.Header); err == nil {
		t.Fatal("a malformed token passed")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(signer).Claims(josejwt.Claims{Issuer: "https://id.example", Subject: "alice", Expiry: josejwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	if p, claims, err := a.Authenticate(r.Context(), r.Header); err != nil || p != "https://id.example/alice" || claims["sub"] != "alice" {
		t.Fatalf("a valid token: %q %v %v", p, claims, err)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "meridian_trust_jwt_refused_total"
	}
	if !found {
		t.Fatal("refusal not counted")
	}
}

// TestJWTRefusesWhatItCannotEnforce: a jwt_authn configuration the
// Authenticator cannot apply as Envoy would is refused (a NACK), naming
// the provider where there is one.
func TestJWTRefusesWhatItCannotEnforce(t *testing.T) {
	inline := &jwtauthn.JwtProvider_LocalJwks{LocalJwks: &core.DataSource{Specifier: &core.DataSource_InlineString{
		InlineString: `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`}}}
	remote := func(d *durationpb.Duration) *jwtauthn.JwtProvider_RemoteJwks {
		return &jwtauthn.JwtProvider_RemoteJwks{RemoteJwks: &jwtauthn.RemoteJwks{
			HttpUri: &core.HttpUri{Uri: "https://id.example/jwks"}, CacheDuration: d}}
	}
	for _, tc := range []struct {
		name string
		cfg  *jwtauthn.JwtAuthentication
		want string
	}{
		{"no providers", &jwtauthn.JwtAuthentication{}, "no providers"},
		{"no issuer", &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{
			"p": {JwksSourceSpecifier: inline}}}, "rule p: issuer"},
		{"zero cache duration", &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{
			"p": {Issuer: "i", JwksSourceSpecifier: remote(durationpb.New(0))}}}, "provider p: cache_duration"},
		{"bad header", &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{
			"p": {Issuer: "i", JwksSourceSpecifier: inline, FromHeaders: []*jwtauthn.JwtHeader{{Name: "a b"}}}}}, "rule p: fromHeaders"},
	} {
		if _, err := authz.JWT(prometheus.NewRegistry())(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	cfg := &jwtauthn.JwtAuthentication{Providers: map[string]*jwtauthn.JwtProvider{"p": {Issuer: "i", JwksSourceSpecifier: remote(durationpb.New(time.Minute))}}}
	if _, err := authz.JWT(prometheus.NewRegistry())(cfg); err != nil {
		t.Fatalf("a remote key set with a cache duration: %v", err)
	}
}
