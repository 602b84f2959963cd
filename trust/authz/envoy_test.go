package authz_test

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	expr "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

// envoyRequest is a request as Envoy's RBAC filter sees it.
type envoyRequest struct {
	uriSAN, subject string // of the peer certificate; "" without one
	headers         map[string]string
	path            string
	payload         map[string]string // the JWT filter's metadata
}

func toEnvoy(r authz.Request, iss, claim, value string) envoyRequest {
	e := envoyRequest{headers: map[string]string{":method": r.Method}, payload: map[string]string{}}
	e.path, _, _ = strings.Cut(r.Path, "?")
	for k, v := range r.Headers {
		e.headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	if !r.Peer.ID.IsZero() {
		e.uriSAN = r.Peer.ID.String()
		e.subject = "O=Meridian"
		if r.Peer.Cluster != "" {
			e.subject = "OU=" + r.Peer.Cluster + ",O=Meridian"
		}
	}
	if iss != "" {
		e.payload["iss"], e.payload[claim] = iss, value
	}
	return e
}

// allowed runs the RBAC filters in order, as Envoy does.
func allowed(t *testing.T, filters []*hcm.HttpFilter, r envoyRequest) bool {
	for _, f := range filters {
		if f.Name == jwt.FilterName {
			continue
		}
		var cfg rbachttp.RBAC
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			t.Fatal(err)
		}
		matched := false
		for _, p := range cfg.Rules.Policies {
			if policyMatches(t, p, r) {
				matched = true
			}
		}
		if cfg.Rules.Action == rbacv3.RBAC_DENY && matched || cfg.Rules.Action == rbacv3.RBAC_ALLOW && !matched {
			return false
		}
	}
	return true
}

func policyMatches(t *testing.T, p *rbacv3.Policy, r envoyRequest) bool {
	perm, prin := false, false
	for _, x := range p.Permissions {
		perm = perm || permission(t, x, r)
	}
	for _, x := range p.Principals {
		prin = prin || principal(t, x, r)
	}
	return perm && prin && (p.Condition == nil || cel(t, p.Condition, r))
}

func permission(t *testing.T, p *rbacv3.Permission, r envoyRequest) bool {
	switch x := p.Rule.(type) {
	case *rbacv3.Permission_Any:
		return true
	case *rbacv3.Permission_AndRules:
		for _, y := range x.AndRules.Rules {
			if !permission(t, y, r) {
				return false
			}
		}
		return true
	case *rbacv3.Permission_OrRules:
		for _, y := range x.OrRules.Rules {
			if permission(t, y, r) {
				return true
			}
		}
		return false
	case *rbacv3.Permission_NotRule:
		return !permission(t, x.NotRule, r)
	case *rbacv3.Permission_Header:
		v, ok := r.headers[x.Header.Name]
		if x.Header.GetPresentMatch() {
			return ok
		}
		return ok && str(t, x.Header.GetStringMatch(), v)
	case *rbacv3.Permission_UrlPath:
		return str(t, x.UrlPath.GetPath(), r.path)
	}
	t.Fatalf("permission %T not interpreted", p.Rule)
	return false
}

func principal(t *testing.T, p *rbacv3.Principal, r envoyRequest) bool {
	switch x := p.Identifier.(type) {
	case *rbacv3.Principal_Any:
		return true
	case *rbacv3.Principal_AndIds:
		for _, y := range x.AndIds.Ids {
			if !principal(t, y, r) {
				return false
			}
		}
		return true
	case *rbacv3.Principal_OrIds:
		for _, y := range x.OrIds.Ids {
			if principal(t, y, r) {
				return true
			}
		}
		return false
	case *rbacv3.Principal_NotId:
		return !principal(t, x.NotId, r)
	case *rbacv3.Principal_Authenticated_:
		return r.uriSAN != "" && (x.Authenticated.PrincipalName == nil || str(t, x.Authenticated.PrincipalName, r.uriSAN))
	case *rbacv3.Principal_SourcedMetadata:
		if x.SourcedMetadata.MetadataSource != rbacv3.MetadataSource_DYNAMIC {
			t.Fatalf("metadata source %v", x.SourcedMetadata.MetadataSource)
		}
		m := x.SourcedMetadata.MetadataMatcher
		if m.Filter != jwt.FilterName || len(m.Path) != 2 || m.Path[0].GetKey() != jwt.PayloadKey {
			t.Fatalf("metadata matcher %v", m)
		}
		v, ok := r.payload[m.Path[1].GetKey()]
		if m.Value.GetPresentMatch() {
			return ok
		}
		return ok && str(t, m.Value.GetStringMatch(), v)
	}
	t.Fatalf("principal %T not interpreted", p.Identifier)
	return false
}

func str(t *testing.T, m *matcher.StringMatcher, v string) bool {
	switch x := m.MatchPattern.(type) {
	case *matcher.StringMatcher_Exact:
		return v == x.Exact
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(v, x.Prefix)
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(v, x.Suffix)
	case *matcher.StringMatcher_SafeRegex: // Envoy's safe_regex matches the whole value
		return regexp.MustCompile(`^(?:` + x.SafeRegex.Regex + `)$`).MatchString(v)
	}
	t.Fatalf("string matcher %T not interpreted", m.MatchPattern)
	return false
}

// cel interprets the expressions RBAC writes: matches() on the peer
// subject (CEL's matches finds a match anywhere), !_ and _&&_.
func cel(t *testing.T, e *expr.Expr, r envoyRequest) bool {
	c := e.GetCallExpr()
	switch c.GetFunction() {
	case "matches":
		if c.Target.GetSelectExpr().GetField() != "subject_peer_certificate" {
			t.Fatalf("CEL target %v", c.Target)
		}
		return regexp.MustCompile(c.Args[0].GetConstExpr().GetStringValue()).MatchString(r.subject)
	case "!_":
		return !cel(t, c.Args[0], r)
	case "_&&_":
		return cel(t, c.Args[0], r) && cel(t, c.Args[1], r)
	}
	t.Fatalf("CEL %v not interpreted", e)
	return false
}

// TestEnvoyRBACMeansTheSame: for every combination of peers, clusters,
// methods, paths, headers and end users, Envoy's RBAC filters (as
// translated) and the Go evaluator meridian-proxy uses decide the same.
func TestEnvoyRBACMeansTheSame(t *testing.T) {
	objs := load(t)
	for _, w := range []authz.Workload{webWorkload, {Namespace: "batch"}, {Namespace: "shop", Labels: map[string]string{"app": "db"}}} {
		ps, err := authz.Compile(objs, w)
		if err != nil {
			t.Fatal(err)
		}
		ras := authz.SelectRequestAuthentications(objs, webWorkload)
		filters, clusters, err := authz.HTTPFilters(ps, ras)
		if err != nil {
			t.Fatal(err)
		}
		if len(clusters) != 2 || filters[0].Name != jwt.FilterName {
			t.Fatalf("JWT filter first and its clusters: %v %v", filters, clusters)
		}
		n, disagree, allows := 0, 0, 0
		users := []struct{ iss, claim, value string }{{}, {"https://id.example", "sub", "alice"}, {"mail", "email", "bob@x"}}
		for _, id := range []string{"", "spiffe://mesh.test/ns/shop/sa/frontend", "spiffe://mesh.test/ns/checkout/sa/cart", "spiffe://mesh.test/ns/batch/sa/job", "spiffe://mesh.test/ns/shop/sa/web-legacy", "spiffe://mesh.test/meridian/cluster/eks-euw1"} {
			for _, cluster := range []string{"", "eks-euw1", "onprem-dc1", "eks-use1"} {
				for _, method := range []string{"GET", "POST", "DELETE"} {
					for _, path := range []string{"/api/items?q=1", "/api/admin/x", "/healthz", "/"} {
						for _, tenant := range []string{"", "acme", "beta-7", "evil"} {
							for _, u := range users {
								req := authz.Request{Peer: peer(id, cluster), Method: method, Path: path, Headers: http.Header{}}
								if id == "" && cluster != "" {
									continue
								}
								if tenant != "" {
									req.Headers.Set("X-Tenant", tenant)
								}
								if u.iss != "" {
									req.RequestPrincipal = u.iss + "/" + u.value
								}
								goSays := ps.Authorize(req)
								envoySays := allowed(t, filters, toEnvoy(req, u.iss, u.claim, u.value))
								n++
								if envoySays {
									allows++
								}
								if goSays.Allow != envoySays {
									disagree++
									if disagree < 5 {
										t.Errorf("%s: %s %s %s peer %q cluster %q tenant %q user %q: Go %v, Envoy %v", w.Namespace, fmt.Sprint(w.Labels), method, path, id, cluster, tenant, req.RequestPrincipal, goSays, envoySays)
									}
								}
							}
						}
					}
				}
			}
		}
		if disagree > 0 {
			t.Fatalf("%d of %d decisions differ", disagree, n)
		}
		if w.Labels["app"] == "web" && (allows == 0 || allows == n) {
			t.Fatalf("web: %d of %d allowed: the comparison says nothing", allows, n)
		}
		t.Logf("workload %s %v: %d requests (%d allowed), Envoy and Go agree", w.Namespace, w.Labels, n, allows)
	}
}

// JWTRules carries every field of a jwtRule to package jwt's rule, named
// after its object and place (the Envoy provider names).
func TestJWTRules(t *testing.T) {
	objs, err := v1alpha1.Load([]byte(`
apiVersion: meridian.io/v1alpha1
kind: RequestAuthentication
metadata: {name: users, namespace: shop}
spec:
  jwtRules:
  - issuer: https://id.example
    audiences: [shop]
    jwksUri: https://id.example/jwks
    jwksCacheDuration: 90s
    fromHeaders: [{name: X-Token, prefix: "T "}]
    principalClaim: email
  - issuer: local
    jwks: '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}'
`), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := authz.JWTRules(authz.SelectRequestAuthentications(objs, webWorkload))
	want := []jwt.Rule{
		{Name: "shop/users[0]", Issuer: "https://id.example", Audiences: []string{"shop"}, JWKSURI: "https://id.example/jwks",
			CacheDuration: 90 * time.Second, FromHeaders: []jwt.Header{{Name: "X-Token", Prefix: "T "}}, PrincipalClaim: "email"},
		{Name: "shop/users[1]", Issuer: "local", JWKS: `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("JWTRules =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := jwt.New(jwt.Config{Rules: got}); err != nil {
		t.Fatalf("the converted rules of a valid object: %v", err)
	}
}
