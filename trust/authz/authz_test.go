package authz_test

import (
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

const policiesYAML = `
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
kind: AuthorizationPolicy
metadata: {name: other-workload, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules: []
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

func load(t *testing.T) []v1alpha1.Object {
	t.Helper()
	objs, err := v1alpha1.Load([]byte(policiesYAML), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

var webWorkload = authz.Workload{Namespace: "shop", Labels: map[string]string{"app": "web"}}

func peer(id, cluster string) authz.Peer {
	if id == "" {
		return authz.Peer{}
	}
	return authz.Peer{ID: spiffeid.RequireFromString(id), Cluster: cluster}
}

func TestAuthorize(t *testing.T) {
	ps, err := authz.Compile(load(t), webWorkload)
	if err != nil {
		t.Fatal(err)
	}
	shopFE := peer("spiffe://mesh.test/ns/shop/sa/frontend", "eks-use1")
	checkout := peer("spiffe://mesh.test/ns/checkout/sa/cart", "eks-euw1")
	for _, tc := range []struct {
		name  string
		req   authz.Request
		allow bool
		by    string
	}{
		{"shop GET api", authz.Request{Peer: shopFE, Method: "GET", Path: "/api/items?x=1"}, true, "shop/web[rule 0]"},
		{"shop DELETE api", authz.Request{Peer: shopFE, Method: "DELETE", Path: "/api/items"}, false, ""},
		{"shop GET elsewhere", authz.Request{Peer: shopFE, Method: "GET", Path: "/private"}, false, ""},
		{"checkout POST from eks-euw1", authz.Request{Peer: checkout, Method: "POST", Path: "/api/orders"}, true, "shop/web[rule 1]"},
		{"checkout POST from onprem-dc1", authz.Request{Peer: peer("spiffe://mesh.test/ns/checkout/sa/cart", "onprem-dc1"), Method: "POST", Path: "/api/orders"}, true, "shop/web[rule 1]"},
		{"checkout POST from eks-use1", authz.Request{Peer: peer("spiffe://mesh.test/ns/checkout/sa/cart", "eks-use1"), Method: "POST", Path: "/api/orders"}, false, ""},
		{"checkout POST admin", authz.Request{Peer: checkout, Method: "POST", Path: "/api/admin/users"}, false, ""},
		{"legacy denied first", authz.Request{Peer: peer("spiffe://mesh.test/ns/shop/sa/web-legacy", ""), Method: "GET", Path: "/api/x"}, false, "meridian-system/no-legacy[rule 0]"},
		{"other namespace on api denied", authz.Request{Peer: peer("spiffe://mesh.test/ns/batch/sa/job", ""), Method: "GET", Path: "/api/x"}, false, "meridian-system/no-legacy[rule 1]"},
		{"end user with tenant", authz.Request{RequestPrincipal: "https://id.example/alice", Method: "GET", Path: "/", Headers: http.Header{"X-Tenant": {"beta-2"}}}, true, "shop/web[rule 2]"},
		{"end user, wrong tenant", authz.Request{RequestPrincipal: "https://id.example/alice", Method: "GET", Path: "/", Headers: http.Header{"X-Tenant": {"evil"}}}, false, ""},
		{"end user, other issuer", authz.Request{RequestPrincipal: "mail/alice@x", Method: "GET", Path: "/", Headers: http.Header{"X-Tenant": {"acme"}}}, false, ""},
		{"plaintext peer", authz.Request{Method: "GET", Path: "/api/x"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ps.Authorize(tc.req)
			if d.Allow != tc.allow || d.Policy != tc.by || d.Reason == "" {
				t.Fatalf("got %+v, want allow=%v by %q", d, tc.allow, tc.by)
			}
		})
	}

	// A workload no policy selects: allowed; one with an empty ALLOW
	// policy: everything denied.
	none, _ := authz.Compile(load(t), authz.Workload{Namespace: "batch"})
	if d := none.Authorize(authz.Request{Peer: peer("spiffe://mesh.test/ns/x/sa/y", ""), Method: "GET", Path: "/x"}); !d.Allow {
		t.Fatalf("no policy: %+v", d)
	}
	db, _ := authz.Compile(load(t), authz.Workload{Namespace: "shop", Labels: map[string]string{"app": "db"}})
	if d := db.Authorize(authz.Request{Peer: shopFE, Method: "GET", Path: "/x"}); d.Allow {
		t.Fatalf("empty ALLOW policy allowed: %+v", d)
	}
	var nilPolicies *authz.Policies
	if !nilPolicies.Authorize(authz.Request{}).Allow {
		t.Fatal("nil policies deny")
	}
}

func TestCompileRefusesInvalid(t *testing.T) {
	objs := load(t)
	objs[0].(*v1alpha1.AuthorizationPolicy).Spec.Rules[0].To[0].Methods[0] = "get"
	if _, err := authz.Compile(objs, webWorkload); err == nil || !strings.Contains(err.Error(), "AuthorizationPolicy shop/web") {
		t.Fatalf("got %v", err)
	}
}

func TestApplies(t *testing.T) {
	meta := func(ns string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: "p"} }
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		ns   string
		sel  *metav1.LabelSelector
		w    authz.Workload
		want bool
	}{
		{"meridian-system", nil, webWorkload, true},
		{"shop", nil, webWorkload, true},
		{"other", nil, webWorkload, false},
		{"shop", sel, webWorkload, true},
		{"shop", sel, authz.Workload{Namespace: "shop", Labels: map[string]string{"app": "db"}}, false},
		{"meridian-system", sel, webWorkload, false},
	} {
		if got := authz.Applies(meta(tc.ns), tc.sel, tc.w); got != tc.want {
			t.Errorf("%+v: %v", tc, got)
		}
	}
}

// The peer's cluster comes from its intermediate, not from anything the
// leaf says.
func TestPeerFromChain(t *testing.T) {
	c := trusttest.NewCA(t, trusttest.TD, "eks-euw1")
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	s, _ := c.Authority.Mint(id, 0)
	if p := authz.PeerFromChain(id, [][]*x509.Certificate{append(s.Certificates, c.Root.Certificate())}); p.Cluster != "eks-euw1" || p.ID != id {
		t.Fatalf("peer %+v", p)
	}
	if p := authz.PeerFromChain(id, [][]*x509.Certificate{{s.Certificates[0], c.Root.Certificate()}}); p.Cluster != "" {
		t.Fatalf("cluster from a root: %+v", p)
	}
}
