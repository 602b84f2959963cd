package policyapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

const webFailover = `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata:
  name: web
  namespace: shop
spec:
  selector:
    services: [web]
  failover:
  - from: us-east-1
    to: [eu-west-1, onprem-east]
`

const paymentsInEU = `apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata:
  name: payments-eu
  namespace: shop
spec:
  selector:
    services: [payments]
  clusterSelector:
    matchLabels:
      jurisdiction: eu
`

func outcomes(rs []*policyapipb.Result) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s/%s %s", r.GetRef().GetKind(), r.GetRef().GetNamespace(), r.GetRef().GetName(), r.GetOutcome()))
	}
	return strings.Join(out, ", ")
}

func TestApplyGetListDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	both := webFailover + "---\n" + paymentsInEU
	if got := outcomes(e.mustApply(both).GetResults()); got != "FailoverPolicy shop/web created, ResidencyRule shop/payments-eu created" {
		t.Fatalf("first apply: %s", got)
	}
	if got := outcomes(e.mustApply(both).GetResults()); got != "FailoverPolicy shop/web unchanged, ResidencyRule shop/payments-eu unchanged" {
		t.Fatalf("second apply: %s", got)
	}
	changed := strings.Replace(webFailover, "[eu-west-1, onprem-east]", "[onprem-east, eu-west-1]", 1)
	if got := outcomes(e.mustApply(changed).GetResults()); got != "FailoverPolicy shop/web configured" {
		t.Fatalf("changed apply: %s", got)
	}

	obj, err := e.policies.Get(ctx, &policyapipb.GetRequest{Ref: &policyapipb.ObjectRef{Kind: "fop", Namespace: "shop", Name: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	m := obj.GetManifest().AsMap()
	to := m["spec"].(map[string]any)["failover"].([]any)[0].(map[string]any)["to"]
	if fmt.Sprint(to) != "[onprem-east eu-west-1]" || m["apiVersion"] != "meridian.io/v1alpha1" || m["kind"] != "FailoverPolicy" ||
		m["metadata"].(map[string]any)["resourceVersion"] == "" || obj.GetOrigin() != "eks-use1/0" || obj.GetSource() != "api" {
		t.Fatalf("get: %v (origin %q, source %q)", m, obj.GetOrigin(), obj.GetSource())
	}
	if _, ok := m["metadata"].(map[string]any)["creationTimestamp"]; ok {
		t.Errorf("manifest carries an empty creationTimestamp: %v", m)
	}

	for _, tc := range []struct {
		kind, ns string
		want     int
	}{{"failoverpolicies", "", 1}, {"ResidencyRule", "shop", 1}, {"", "", 2}, {"", "other", 0}, {"gw", "", 0}} {
		l, err := e.policies.List(ctx, &policyapipb.ListRequest{Kind: tc.kind, Namespace: tc.ns})
		if err != nil || len(l.GetObjects()) != tc.want {
			t.Errorf("list %q in %q: %d objects (%v), want %d", tc.kind, tc.ns, len(l.GetObjects()), err, tc.want)
		}
	}

	// The compiled set reaches Apply (the xDS server) and the engine
	// explain uses.
	testutil.Eventually(t, 5*time.Second, func() error {
		p := e.applied.Load()
		if p == nil || len(p.Engine().Config().Policies) != 2 {
			return errors.New("policies not compiled yet")
		}
		if p.Engine() != e.srv.Engine() {
			return errors.New("explain's engine is not the one handed to the xDS server")
		}
		return nil
	})

	del, err := e.policies.Delete(ctx, &policyapipb.DeleteRequest{Refs: []*policyapipb.ObjectRef{{Kind: "rr", Namespace: "shop", Name: "payments-eu"}}})
	if err != nil || outcomes(del.GetResults()) != "ResidencyRule shop/payments-eu deleted" {
		t.Fatalf("delete: %v %v", del, err)
	}
	_, err = e.policies.Get(ctx, &policyapipb.GetRequest{Ref: &policyapipb.ObjectRef{Kind: "rr", Namespace: "shop", Name: "payments-eu"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "ResidencyRule shop/payments-eu not found") {
		t.Fatalf("get after delete: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(e.srv.Engine().Config().Policies); n != 1 {
			return fmt.Errorf("%d policies in force, want 1", n)
		}
		return nil
	})
}

// Every bad apply is refused with the source, line, object and field, and
// changes nothing.
func TestApplyRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name      string
		yaml      string
		want      []string
		forceable bool
	}{
		{"invalid YAML", "apiVersion: meridian.io/v1alpha1\nkind: [FailoverPolicy\n", []string{"policies.yaml:", "(document 1): not valid YAML"}, false},
		{"wrong apiVersion", strings.Replace(webFailover, "meridian.io/v1alpha1", "meridian.io/v2", 1),
			[]string{`policies.yaml:1 (document 1): apiVersion: Unsupported value: "meridian.io/v2": supported values: "meridian.io/v1alpha1"`}, false},
		{"unknown kind", strings.Replace(webFailover, "kind: FailoverPolicy", "kind: Failover", 1),
			[]string{`policies.yaml:2 (document 1): kind: Unsupported value: "Failover"`}, false},
		{"missing name", strings.Replace(webFailover, "  name: web\n", "", 1),
			[]string{"FailoverPolicy shop/: metadata.name: Required value"}, false},
		{"unknown field", strings.Replace(webFailover, "  failover:", "  failovr:", 1),
			[]string{`unknown field "spec.failovr"`}, false},
		{"weights not summing to 100", webFailover + "  distribute:\n  - from: us-east-1/*\n    to:\n    - locality: us-east-1/use1-az1\n      weight: 60\n    - locality: eu-west-1/*\n      weight: 30\n",
			[]string{"policies.yaml:14 (document 1): FailoverPolicy shop/web: spec.distribute[0].to: Invalid value: 90: weights must sum to 100"}, false},
		{"failover cycle", strings.Replace(webFailover, "[eu-west-1, onprem-east]", "[us-east-1]", 1),
			[]string{"spec.failover[0].to[0]: Invalid value: \"us-east-1\": cycle"}, false},
		{"no objects", "# nothing here\n", []string{"policies.yaml: no objects"}, false},
		{"object twice", webFailover + "---\n" + webFailover, []string{"policies.yaml: document 2: FailoverPolicy shop/web is also given in policies.yaml: document 1"}, false},
		{"second document bad", paymentsInEU + "---\n" + strings.Replace(webFailover, "kind: FailoverPolicy", "kind: Nope", 1),
			[]string{`(document 2): kind: Unsupported value: "Nope"`}, false},
		// Set-level checks: forceable.
		{"unknown region", strings.Replace(webFailover, "onprem-east", "mars-1", 1),
			[]string{`FailoverPolicy shop/web: spec.failover[0].to[1]: Not found: "mars-1"`}, true},
		{"selector matching nothing", strings.Replace(webFailover, "[web]", "[nosuch]", 1),
			[]string{"FailoverPolicy shop/web: spec.selector: Invalid value: \"services=nosuch\": matches no service in namespace shop"}, true},
		{"cluster selector matching nothing", strings.Replace(paymentsInEU, "jurisdiction: eu", "jurisdiction: mars", 1),
			[]string{"ResidencyRule shop/payments-eu: spec.clusterSelector: Invalid value: \"jurisdiction=mars\": matches no cluster"}, true},
		{"residency stranding a service", paymentsInEU + "  allowedRegions: [us-east-1]\n",
			[]string{"ResidencyRule shop/payments-eu: spec: Invalid value: \"payments.shop\": leaves payments.shop with no allowed endpoint: its 12 endpoints run in eu-west-1, onprem-east, us-east-1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.pol.Snapshot().Version()
			_, err := e.apply(tc.yaml, false)
			vs, forceable := violations(t, err)
			containsAll(t, vs, tc.want...)
			if forceable != tc.forceable {
				t.Errorf("forceable = %v, want %v", forceable, tc.forceable)
			}
			if v := e.pol.Snapshot().Version(); v != before {
				t.Errorf("the store changed (version %d → %d)", before, v)
			}
		})
	}

	// A conflict with what is in force: a second failover policy on web.
	e.mustApply(webFailover)
	_, err := e.apply(strings.Replace(webFailover, "name: web", "name: web-too", 1), false)
	vs, forceable := violations(t, err)
	containsAll(t, vs, `FailoverPolicy shop/web-too: spec.selector: Invalid value: "web": also selected by FailoverPolicy shop/web: one failover policy per service`)
	if !forceable {
		t.Error("a conflict is forceable")
	}

	// Force turns set-level refusals into warnings.
	resp, err := e.apply(paymentsInEU+"  allowedRegions: [us-east-1]\n", true)
	if err != nil {
		t.Fatalf("forced apply: %v", err)
	}
	if len(resp.GetWarnings()) == 0 || !strings.Contains(resp.GetWarnings()[0].GetMessage(), "(forced)") {
		t.Fatalf("forced apply warnings: %v", resp.GetWarnings())
	}
	// A problem already in force is not blamed on an unrelated apply.
	e.mustApply(strings.Replace(paymentsInEU, "name: payments-eu", "name: payments-eu-2", 1))
}

func TestDeleteRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.mustApply(`apiVersion: meridian.io/v1alpha1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  type: ingress
  selector: {istio: ingressgateway}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hosts: ["*"]}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.example.com]
  gateways: [ingress]
  http:
  - route:
    - host: web
`)
	ctx := context.Background()
	del := func(force bool, refs ...*policyapipb.ObjectRef) error {
		_, err := e.policies.Delete(ctx, &policyapipb.DeleteRequest{Refs: refs, Force: force})
		return err
	}
	before := e.pol.Snapshot().Version()
	for _, tc := range []struct {
		ref  *policyapipb.ObjectRef
		want string
	}{
		{&policyapipb.ObjectRef{Kind: "pods", Namespace: "shop", Name: "x"}, `refs[0].kind: unknown kind "pods": want one of FailoverPolicy (failoverpolicies, fop)`},
		{&policyapipb.ObjectRef{Kind: "gw", Namespace: "shop"}, "refs[0].name: Required value"},
		{&policyapipb.ObjectRef{Kind: "gw", Namespace: "shop", Name: "Bad_Name"}, `refs[0].name: Invalid value: "Bad_Name"`},
	} {
		vs, _ := violations(t, del(false, tc.ref))
		containsAll(t, vs, tc.want)
	}
	err := del(false, &policyapipb.ObjectRef{Kind: "gw", Namespace: "shop", Name: "ingress"}, &policyapipb.ObjectRef{Kind: "gw", Namespace: "shop", Name: "egress"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "Gateway shop/egress not found") {
		t.Fatalf("deleting a missing object: %v", err)
	}
	vs, forceable := violations(t, del(false, &policyapipb.ObjectRef{Kind: "gw", Namespace: "shop", Name: "ingress"}))
	containsAll(t, vs, `TrafficRoute shop/web: spec.gateways[0]: Not found: "ingress"`)
	if !forceable {
		t.Error("a dangling reference is forceable")
	}
	if v := e.pol.Snapshot().Version(); v != before {
		t.Fatalf("refused deletes changed the store (version %d → %d)", before, v)
	}
	if err := del(true, &policyapipb.ObjectRef{Kind: "gw", Namespace: "shop", Name: "ingress"}); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	if _, err := e.policies.Apply(ctx, &policyapipb.ApplyRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("apply without sources: %v", err)
	}
}
