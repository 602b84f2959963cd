package v1alpha1_test

import (
	"strings"
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

const securityYAML = `
apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: default, namespace: meridian-system}
spec: {mode: STRICT}
---
apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
  mode: STRICT
  portLevelMtls: {"8080": PERMISSIVE}
---
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from:
    - principals: ["spiffe://mesh.example/ns/shop/sa/*"]
      clusters: [eks-euw1]
    - namespaces: [checkout]
      requestPrincipals: ["https://id.example/*"]
    to:
    - methods: [GET, POST]
      paths: ["/api/*", /healthz]
    when:
    - header: x-tenant
      values: [acme, "beta-*"]
---
apiVersion: meridian.io/v1alpha1
kind: RequestAuthentication
metadata: {name: users, namespace: shop}
spec:
  jwtRules:
  - issuer: https://id.example
    audiences: [shop]
    jwksUri: https://id.example/.well-known/jwks.json
    jwksCacheDuration: 10m
  - issuer: local
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}'
    fromHeaders: [{name: x-token}]
    principalClaim: email
`

func TestSecurityKindsDecodeAndValidate(t *testing.T) {
	objs, err := v1alpha1.Load([]byte(securityYAML), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, v1alpha1.KindOf(o))
		if errs := o.Validate(); len(errs) > 0 {
			t.Errorf("%s: %v", v1alpha1.Describe(o), errs)
		}
	}
	if got := strings.Join(kinds, " "); got != "PeerAuthentication PeerAuthentication AuthorizationPolicy RequestAuthentication" {
		t.Fatalf("kinds %s", got)
	}
	ap := objs[2].(*v1alpha1.AuthorizationPolicy)
	if ap.Spec.Rules[0].When[0].Header != "x-tenant" || ap.Spec.Rules[0].From[0].Clusters[0] != "eks-euw1" {
		t.Fatalf("decoded %+v", ap.Spec)
	}
}

func TestSecurityValidation(t *testing.T) {
	base := func() []v1alpha1.Object {
		objs, err := v1alpha1.Load([]byte(securityYAML), v1alpha1.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	pa := func(o []v1alpha1.Object) *v1alpha1.PeerAuthenticationSpec {
		return &o[1].(*v1alpha1.PeerAuthentication).Spec
	}
	ap := func(o []v1alpha1.Object) *v1alpha1.AuthorizationPolicySpec {
		return &o[2].(*v1alpha1.AuthorizationPolicy).Spec
	}
	ra := func(o []v1alpha1.Object) *v1alpha1.RequestAuthenticationSpec {
		return &o[3].(*v1alpha1.RequestAuthentication).Spec
	}
	for _, tc := range []struct {
		name   string
		index  int
		mutate func([]v1alpha1.Object)
		field  string
		says   string
	}{
		{"mode", 1, func(o []v1alpha1.Object) { pa(o).Mode = "DISABLE" }, "spec.mode", "Unsupported value"},
		{"port mode", 1, func(o []v1alpha1.Object) { pa(o).PortLevelMTLS["8080"] = "OFF" }, "spec.portLevelMtls[8080]", "Unsupported value"},
		{"port number", 1, func(o []v1alpha1.Object) { pa(o).PortLevelMTLS["http"] = "STRICT" }, "spec.portLevelMtls[http]", "port number"},
		{"port range", 1, func(o []v1alpha1.Object) { pa(o).PortLevelMTLS["70000"] = "STRICT" }, "spec.portLevelMtls[70000]", "between 1 and 65535"},
		{"port mode without selector", 1, func(o []v1alpha1.Object) { pa(o).Selector = nil }, "spec.portLevelMtls", "needs a selector"},
		{"action", 2, func(o []v1alpha1.Object) { ap(o).Action = "AUDIT" }, "spec.action", "Unsupported value"},
		{"principal not SPIFFE", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].From[0].Principals[0] = "mesh.example/ns/shop/sa/web" }, "spec.rules[0].from[0].principals[0]", "SPIFFE ID"},
		{"wildcard in the middle", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].From[0].Principals[0] = "spiffe://mesh.example/ns/*/sa/web" }, "spec.rules[0].from[0].principals[0]", "wildcard"},
		{"empty namespace", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].From[1].Namespaces[0] = "" }, "spec.rules[0].from[1].namespaces[0]", "empty value"},
		{"lower-case method", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].To[0].Methods[0] = "get" }, "spec.rules[0].to[0].methods[0]", "upper-case"},
		{"relative path", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].To[0].Paths[0] = "api" }, "spec.rules[0].to[0].paths[0]", "starts with /"},
		{"path with query", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].To[0].Paths[1] = "/healthz?x=1" }, "spec.rules[0].to[0].paths[1]", "no query"},
		{"header name", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].When[0].Header = "x tenant" }, "spec.rules[0].when[0].header", "header name"},
		{"no values", 2, func(o []v1alpha1.Object) { ap(o).Rules[0].When[0].Values = nil }, "spec.rules[0].when[0].values", "values or notValues"},
		{"no rules", 3, func(o []v1alpha1.Object) { ra(o).JWTRules = nil }, "spec.jwtRules", "Required"},
		{"no issuer", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[0].Issuer = "" }, "spec.jwtRules[0].issuer", "Required"},
		{"duplicate issuer", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[1].Issuer = "https://id.example" }, "spec.jwtRules[1].issuer", "Duplicate"},
		{"both key sources", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[0].JWKS = `{"keys":[{}]}` }, "spec.jwtRules[0].jwks", "exactly one"},
		{"bad JWKS", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[1].JWKS = `{"keys":[]}` }, "spec.jwtRules[1].jwks", "Key Set"},
		{"bad URI", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[0].JWKSURI = "file:///etc/keys" }, "spec.jwtRules[0].jwksUri", "http(s) URL"},
		{"token header", 3, func(o []v1alpha1.Object) { ra(o).JWTRules[1].FromHeaders[0].Name = "x:token" }, "spec.jwtRules[1].fromHeaders[0].name", "header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := base()
			tc.mutate(objs)
			errs := objs[tc.index].Validate()
			if len(errs) != 1 || errs[0].Field != tc.field || !strings.Contains(errs[0].Error(), tc.says) {
				t.Fatalf("got %v, want one error on %s saying %q", errs, tc.field, tc.says)
			}
		})
	}
}
