package v1alpha1_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

func labContext() v1alpha1.Context {
	return v1alpha1.Context{
		Regions: []string{"eu-west-1", "onprem-east", "us-east-1"},
		Clusters: map[string]v1alpha1.ClusterInfo{
			"eks-euw1":   {Region: "eu-west-1", Labels: map[string]string{"jurisdiction": "eu"}},
			"eks-use1":   {Region: "us-east-1", Labels: map[string]string{"jurisdiction": "us"}},
			"onprem-dc1": {Region: "onprem-east", Labels: map[string]string{"jurisdiction": "us"}},
		},
		Services: []v1alpha1.ServiceInfo{
			{Namespace: "shop", Name: "web"}, {Namespace: "shop", Name: "cart"}, {Namespace: "shop", Name: "web-shadow"},
			{Namespace: "payments", Name: "ledger", Labels: map[string]string{"data": "eu-personal"}},
		},
	}
}

func labSet(t *testing.T) []v1alpha1.Object {
	t.Helper()
	objs, err := v1alpha1.Load(readLab(t), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestValidateSetLabIsClean(t *testing.T) {
	if fs := v1alpha1.ValidateSet(labSet(t), labContext()); len(fs) != 0 {
		t.Fatalf("findings: %v", fs)
	}
	// Without any context, only what the objects say of each other counts.
	if fs := v1alpha1.ValidateSet(labSet(t), v1alpha1.Context{}); len(fs) != 0 {
		t.Fatalf("findings: %v", fs)
	}
}

func TestValidateSetFindings(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(objs []v1alpha1.Object) []v1alpha1.Object
		ctx     func(*v1alpha1.Context)
		object  string
		field   string
		says    string
		warning bool
	}{
		{name: "unknown failover region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[0]).Failover[0].To[1] = "ap-south-1"
			return o
		}, object: "FailoverPolicy shop/shop-failover", field: "spec.failover[0].to[1]", says: `Not found: "ap-south-1"`},
		{name: "unknown from region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[0]).Failover[1].From = "mars-1"
			return o
		}, object: "FailoverPolicy shop/shop-failover", field: "spec.failover[1].from", says: "Not found"},
		{name: "unknown distribute region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[0]).Distribute[0].To[1].Locality = "us-west-2/*"
			return o
		}, object: "FailoverPolicy shop/shop-failover", field: "spec.distribute[0].to[1].locality", says: `"us-west-2"`},
		{name: "unknown distribute from region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[0]).Distribute[0].From = "us-west-2/*"
			return o
		}, object: "FailoverPolicy shop/shop-failover", field: "spec.distribute[0].from", says: "Not found"},
		{name: "unknown allowed region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			rr(o[2]).AllowedRegions = []string{"eu-north-1"}
			return o
		}, object: "ResidencyRule payments/eu-only", field: "spec.allowedRegions[0]", says: "Not found"},
		{name: "service selector matches nothing", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[0]).Selector.Services = []string{"nope"}
			return o
		}, object: "FailoverPolicy shop/shop-failover", field: "spec.selector", says: "matches no service in namespace shop"},
		{name: "residency selector matches nothing", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			rr(o[2]).Selector.Labels.MatchLabels["data"] = "us-personal"
			return o
		}, object: "ResidencyRule payments/eu-only", field: "spec.selector", says: "matches no service"},
		{name: "cluster selector matches nothing", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			rr(o[2]).ClusterSelector.MatchLabels["jurisdiction"] = "ch"
			return o
		}, object: "ResidencyRule payments/eu-only", field: "spec.clusterSelector", says: "matches no cluster"},
		{name: "two failover policies on one service", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			return append(o, &v1alpha1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "zz"},
				Spec: v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"region"}}})
		}, object: "FailoverPolicy shop/zz", field: "spec.selector", says: "also selected by FailoverPolicy shop/shop-failover"},
		{name: "two failover policies, services unknown", ctx: func(c *v1alpha1.Context) { c.Services = nil }, mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			return append(o, &v1alpha1.FailoverPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "zz"},
				Spec: v1alpha1.FailoverPolicySpec{Selector: v1alpha1.ServiceSelector{Services: []string{"cart"}}, FailoverPriority: []string{"region"}}})
		}, object: "FailoverPolicy shop/zz", field: "spec.selector", says: `"cart"`},
		{name: "outlier detection twice", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			dp(o[4]).OutlierDetection = &v1alpha1.OutlierDetection{Consecutive5xxErrors: i32(5)}
			return o
		}, object: "DestinationPolicy shop/web", field: "spec.outlierDetection", says: "set it in one place"},
		{name: "two destination policies for one host", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			return append(o, &v1alpha1.DestinationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web2"},
				Spec: v1alpha1.DestinationPolicySpec{Host: "web"}})
		}, object: "DestinationPolicy shop/web2", field: "spec.host", says: "also DestinationPolicy shop/web"},
		{name: "two routes for one host", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			return append(o, &v1alpha1.TrafficRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "steal"},
				Spec: v1alpha1.TrafficRouteSpec{Hosts: []string{"web.shop"}, HTTP: []v1alpha1.HTTPRoute{{Route: []v1alpha1.RouteDestination{{Destination: v1alpha1.Destination{Host: "web.shop"}}}}}}})
		}, object: "TrafficRoute other/steal", field: "spec.hosts[0]", says: "also routed by TrafficRoute shop/web for gateway mesh"},
		{name: "residency rules that do not meet", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			return append(o, &v1alpha1.ResidencyRule{ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "us-only"},
				Spec: v1alpha1.ResidencyRuleSpec{AllowedRegions: []string{"us-east-1"}}})
		}, object: "ResidencyRule payments/us-only", field: "spec.allowedRegions", says: "could run nowhere"},
		{name: "failover into a forbidden region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[1]).FailoverPriority = nil
			fo(o[1]).Failover = []v1alpha1.RegionFailover{{From: "eu-west-1", To: []string{"us-east-1"}}}
			return o
		}, object: "FailoverPolicy payments/by-jurisdiction", field: "spec.failover[0].to[0]", says: "it is skipped", warning: true},
		{name: "distribute into a forbidden region", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			fo(o[1]).Distribute = []v1alpha1.Distribute{{From: "*", To: []v1alpha1.DistributeTarget{{Locality: "us-east-1/*", Weight: 100}}}}
			return o
		}, object: "FailoverPolicy payments/by-jurisdiction", field: "spec.distribute[0].to[0].locality", says: "weight is dropped", warning: true},
		{name: "unknown subset", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			tr(o[3]).HTTP[0].Route[0].Subset = "v3"
			return o
		}, object: "TrafficRoute shop/web", field: "spec.http[0].route[0].subset", says: `Not found: "v3"`},
		{name: "unknown gateway", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			tr(o[3]).Gateways = []string{"mesh", "egress"}
			return o
		}, object: "TrafficRoute shop/web", field: "spec.gateways[1]", says: `Not found: "egress"`},
		{name: "unknown cluster", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			tr(o[3]).HTTP[1].Route[1].Cluster = "eks-apse1"
			return o
		}, object: "TrafficRoute shop/web", field: "spec.http[1].route[1].cluster", says: `Not found: "eks-apse1"`},
		{name: "mirror to an unknown subset", mutate: func(o []v1alpha1.Object) []v1alpha1.Object {
			tr(o[3]).HTTP[0].Mirror.Subset = "shadow"
			return o
		}, object: "TrafficRoute shop/web", field: "spec.http[0].mirror.subset", says: "Not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := labContext()
			if c.ctx != nil {
				c.ctx(&ctx)
			}
			fs := v1alpha1.ValidateSet(c.mutate(labSet(t)), ctx)
			for _, f := range fs {
				if f.Object == c.object && f.Err.Field == c.field && strings.Contains(f.Err.Error(), c.says) && f.Warning == c.warning {
					if !c.warning && len(fs.Errors()) == 0 {
						t.Error("Errors() dropped an error")
					}
					return
				}
			}
			t.Errorf("want %s on %s saying %q (warning %v), got %v", c.object, c.field, c.says, c.warning, fs)
		})
	}
}

func TestServiceHost(t *testing.T) {
	for _, c := range []struct{ host, ns, wantNs, wantName string }{
		{"web", "shop", "shop", "web"},
		{"web.other", "shop", "other", "web"},
		{"web.other.svc", "shop", "other", "web"},
		{"web.other.svc.cluster.local", "shop", "other", "web"},
	} {
		ns, name, ok := v1alpha1.ServiceHost(c.host, c.ns)
		if !ok || ns != c.wantNs || name != c.wantName {
			t.Errorf("%s: %s %s %v", c.host, ns, name, ok)
		}
	}
	for _, external := range []string{"api.example.com", "*.example.com"} {
		if _, _, ok := v1alpha1.ServiceHost(external, "shop"); ok {
			t.Errorf("%s resolved to a mesh service", external)
		}
	}
}
