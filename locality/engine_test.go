package locality_test

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

func TestEngineOrders(t *testing.T) {
	v := lab(t, web, payments).View()
	cases := []struct {
		name     string
		policies []v1alpha1.Object
		client   locality.Client
		svc      registry.ServiceKey
		want     string
	}{
		{
			name:   "default order: zone, region, other regions",
			client: client(use1, "use1-az1"), svc: web,
			want: "us-east-1/use1-az1 | us-east-1/use1-az2 | eu-west-1/euw1-az1,eu-west-1/euw1-az2,onprem-east/dc1-a,onprem-east/dc1-b",
		},
		{
			name:     "failover from us-east-1 to on-prem, then the rest",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"onprem-east"}}}})},
			client:   client(use1, "use1-az1"), svc: web,
			want: "us-east-1/use1-az1 | us-east-1/use1-az2 | onprem-east/dc1-a,onprem-east/dc1-b | eu-west-1/euw1-az1,eu-west-1/euw1-az2",
		},
		{
			name: "failover order lists every region",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{
				{From: "us-east-1", To: []string{"eu-west-1", "onprem-east"}}}})},
			client: client(use1, "use1-az2"), svc: web,
			want: "us-east-1/use1-az2 | us-east-1/use1-az1 | eu-west-1/euw1-az1,eu-west-1/euw1-az2 | onprem-east/dc1-a,onprem-east/dc1-b",
		},
		{
			name:     "a client region without an order keeps the default",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"onprem-east"}}}})},
			client:   client(euw1, "euw1-az1"), svc: web,
			want: "eu-west-1/euw1-az1 | eu-west-1/euw1-az2 | onprem-east/dc1-a,onprem-east/dc1-b,us-east-1/use1-az1,us-east-1/use1-az2",
		},
		{
			name:     "a policy for another service does not apply",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{Selector: v1alpha1.ServiceSelector{Services: []string{"payments"}}, Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"onprem-east"}}}})},
			client:   client(use1, "use1-az1"), svc: web,
			want: "us-east-1/use1-az1 | us-east-1/use1-az2 | eu-west-1/euw1-az1,eu-west-1/euw1-az2,onprem-east/dc1-a,onprem-east/dc1-b",
		},
		{
			name:     "label priority: jurisdiction, region, zone (US client: on-prem is also US)",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"jurisdiction", "topology.kubernetes.io/region", "zone"}})},
			client:   client(use1, "use1-az1"), svc: web,
			want: "us-east-1/use1-az1 | us-east-1/use1-az2 | onprem-east/dc1-a,onprem-east/dc1-b | eu-west-1/euw1-az1,eu-west-1/euw1-az2",
		},
		{
			name:     "label priority: the EU client has no other EU region, so the gap closes",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"jurisdiction", "region", "zone"}})},
			client:   client(euw1, "euw1-az2"), svc: web,
			want: "eu-west-1/euw1-az2 | eu-west-1/euw1-az1 | onprem-east/dc1-a,onprem-east/dc1-b,us-east-1/use1-az1,us-east-1/use1-az2",
		},
		{
			name:     "label priority on cluster and network",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"network", "cluster"}})},
			client:   client(onprem, "dc1-b"), svc: web,
			want: "onprem-east/dc1-a,onprem-east/dc1-b | eu-west-1/euw1-az1,eu-west-1/euw1-az2,us-east-1/use1-az1,us-east-1/use1-az2",
		},
		{
			name: "distribute puts its targets first and keeps failover behind",
			policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{Distribute: []v1alpha1.Distribute{{
				From: "us-east-1/*", To: []v1alpha1.DistributeTarget{{Locality: "us-east-1/use1-az2", Weight: 80}, {Locality: "onprem-east/*", Weight: 20}}}}})},
			client: client(use1, "use1-az1"), svc: web,
			want: "onprem-east/dc1-a,onprem-east/dc1-b,us-east-1/use1-az2 | us-east-1/use1-az1 | eu-west-1/euw1-az1,eu-west-1/euw1-az2",
		},
		{
			name:     "residency: an EU-only service offers US clients only EU endpoints",
			policies: []v1alpha1.Object{residency("eu", euOnly)},
			client:   client(use1, "use1-az1"), svc: payments,
			want: "eu-west-1/euw1-az1,eu-west-1/euw1-az2",
		},
		{
			name: "residency by cluster label",
			policies: []v1alpha1.Object{residency("eu", v1alpha1.ResidencyRuleSpec{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"jurisdiction": "eu"}}})},
			client: client(onprem, "dc1-a"), svc: web,
			want: "eu-west-1/euw1-az1,eu-west-1/euw1-az2",
		},
		{
			name: "residency wins over a failover order into a forbidden region",
			policies: []v1alpha1.Object{residency("eu", euOnly),
				failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "eu-west-1", To: []string{"us-east-1"}}}})},
			client: client(euw1, "euw1-az1"), svc: payments,
			want: "eu-west-1/euw1-az1 | eu-west-1/euw1-az2",
		},
		{
			name:     "audit mode serves as usual",
			policies: []v1alpha1.Object{residency("eu", v1alpha1.ResidencyRuleSpec{Selector: euOnly.Selector, AllowedRegions: euOnly.AllowedRegions, Mode: v1alpha1.ResidencyAudit})},
			client:   client(euw1, "euw1-az1"), svc: payments,
			want: "eu-west-1/euw1-az1 | eu-west-1/euw1-az2 | onprem-east/dc1-a,onprem-east/dc1-b,us-east-1/use1-az1,us-east-1/use1-az2",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := engine(t, locality.Config{Policies: c.policies}).Assign(v, c.svc, c.client)
			if got := levels(a); got != c.want {
				t.Errorf("levels\n got %s\nwant %s", got, c.want)
			}
			for _, l := range a.Levels {
				for _, le := range l.Localities {
					if le.Weight == 0 || len(le.Endpoints) == 0 {
						t.Errorf("locality %s: weight %d with %d endpoints", le.Locality, le.Weight, len(le.Endpoints))
					}
				}
			}
		})
	}
}

func TestDefaultAssignIsEngineWithoutPolicies(t *testing.T) {
	v := lab(t, web).View()
	c := client(use1, "use1-az1")
	a := locality.Assign(v, web, c)
	if got, want := levels(a), levels(engine(t, locality.Config{}).Assign(v, web, c)); got != want {
		t.Fatalf("Assign %s, engine %s", got, want)
	}
	if a.Levels[0].Reason.Rule != "the client's own zone" || a.Levels[0].Localities[0].Weight != 2 {
		t.Fatalf("level 0: %+v", a.Levels[0])
	}
	if a.OutlierDetection.Consecutive5xxErrors == nil || a.OutlierDetectionReason.Policy != "" {
		t.Fatalf("default outlier detection missing: %+v", a.OutlierDetection)
	}
}

func TestReasonsNamePolicyAndField(t *testing.T) {
	v := lab(t, web, payments).View()
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{
		failover("fo", v1alpha1.FailoverPolicySpec{
			Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"eu-west-1", "onprem-east"}}},
			Distribute: []v1alpha1.Distribute{{From: "us-east-1/use1-az1", To: []v1alpha1.DistributeTarget{
				{Locality: "us-east-1/use1-az1", Weight: 75}, {Locality: "us-east-1/use1-az2", Weight: 25}}}},
			OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xxErrors: ptr[int32](7)},
		}),
		residency("eu", euOnly),
		residency("audit-us", v1alpha1.ResidencyRuleSpec{AllowedRegions: []string{"us-east-1"}, Mode: v1alpha1.ResidencyAudit}),
	}})
	a := e.Assign(v, web, client(use1, "use1-az1"))
	if got := levels(a); got != "us-east-1/use1-az1,us-east-1/use1-az2 | eu-west-1/euw1-az1,eu-west-1/euw1-az2 | onprem-east/dc1-a,onprem-east/dc1-b" {
		t.Fatalf("levels %s", got)
	}
	want := []locality.Reason{
		{Rule: "distribute rule for clients in us-east-1/use1-az1", Policy: "FailoverPolicy shop/fo", Field: "spec.distribute[0]"},
		{Rule: "failover to eu-west-1 (choice 1 for clients in us-east-1)", Policy: "FailoverPolicy shop/fo", Field: "spec.failover[0].to[0]"},
		{Rule: "failover to onprem-east (choice 2 for clients in us-east-1)", Policy: "FailoverPolicy shop/fo", Field: "spec.failover[0].to[1]"},
	}
	for i, w := range want {
		if a.Levels[i].Reason != w {
			t.Errorf("level %d reason %+v, want %+v", i, a.Levels[i].Reason, w)
		}
	}
	l0 := a.Levels[0].Localities
	if l0[0].Weight != 75000 || l0[1].Weight != 25000 || l0[1].WeightReason.Field != "spec.distribute[0].to[1]" {
		t.Errorf("distribute weights %d/%d (%+v)", l0[0].Weight, l0[1].Weight, l0[1].WeightReason)
	}
	if *a.OutlierDetection.Consecutive5xxErrors != 7 || a.OutlierDetectionReason.Policy != "FailoverPolicy shop/fo" || a.OutlierDetection.Interval == nil {
		t.Errorf("outlier detection %+v from %+v", a.OutlierDetection, a.OutlierDetectionReason)
	}
	if a.Failover != "FailoverPolicy shop/fo" || len(a.Blocked) != 0 {
		t.Errorf("failover %q blocked %d", a.Failover, len(a.Blocked))
	}
	// The audit rule (every service) would block the 8 non-US endpoints.
	if len(a.Audited) != 8 || a.Audited[0].Rule.Policy != "ResidencyRule shop/audit-us" {
		t.Errorf("audited %d: %+v", len(a.Audited), a.Audited)
	}
	p := e.Assign(v, payments, client(use1, "use1-az1"))
	if len(p.Blocked) != 8 || p.Blocked[0].Rule.Policy != "ResidencyRule shop/eu" || !strings.Contains(p.Blocked[0].Rule.Rule, "regions eu-west-1") {
		t.Errorf("blocked %d: %+v", len(p.Blocked), p.Blocked)
	}
}

func TestOutlierDetectionFromDestinationPolicy(t *testing.T) {
	v := lab(t, web).View()
	dp := &v1alpha1.DestinationPolicy{ObjectMeta: meta("web"), Spec: v1alpha1.DestinationPolicySpec{Host: "web.shop.svc.cluster.local",
		OutlierDetection: &v1alpha1.OutlierDetection{MaxEjectionPercent: ptr[int32](30)}}}
	a := engine(t, locality.Config{Policies: []v1alpha1.Object{dp}}).Assign(v, web, client(use1, "use1-az1"))
	if *a.OutlierDetection.MaxEjectionPercent != 30 || a.OutlierDetectionReason.Policy != "DestinationPolicy shop/web" {
		t.Fatalf("%+v from %+v", a.OutlierDetection, a.OutlierDetectionReason)
	}
}

func TestHealthMerge(t *testing.T) {
	r := lab(t, web)
	// Kubernetes readiness: one az1 endpoint not ready, one terminating.
	seg := r.View().Segment(use1.Name)
	for id, h := range map[string]registry.Health{"web-use1-az1-0": registry.Unhealthy, "web-use1-az2-0": registry.Draining} {
		e, _ := seg.Endpoint(registry.EndpointKey{Service: web, ID: id})
		cp := *e
		cp.Health = h
		if _, err := r.Apply(use1.Name, registry.PutEndpoint(&cp)); err != nil {
			t.Fatal(err)
		}
	}
	// Federation: on-prem unreachable (stale, still serving), EU dead.
	if err := r.SetStatus(onprem.Name, registry.ClusterStatus{State: registry.Unreachable, LastSeen: staleAt()}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetStatus(euw1.Name, registry.ClusterStatus{State: registry.Dead}); err != nil {
		t.Fatal(err)
	}
	v := r.View()
	// A drill drains us-east-1/use1-az2.
	e := engine(t, locality.Config{Drains: []locality.Target{{Kind: locality.TargetZone, Name: "us-east-1/use1-az2"}}})
	a := e.Assign(v, web, client(use1, "use1-az1"))
	got := map[string]string{}
	for _, l := range a.Levels {
		for _, le := range l.Localities {
			for _, ep := range le.Endpoints {
				s := ep.Health.String()
				if ep.HealthReason != nil {
					s += " (" + ep.HealthReason.Rule + ")"
				}
				if !ep.StaleSince.IsZero() && !ep.StaleSince.Equal(staleAt()) {
					t.Errorf("%s stale since %v", ep.ID, ep.StaleSince)
				}
				got[ep.ID] = s
			}
		}
	}
	want := map[string]string{
		"web-use1-az1-0": "unhealthy",
		"web-use1-az1-1": "healthy",
		"web-use1-az2-0": "draining (drained by the drill of zone us-east-1/use1-az2)",
		"web-use1-az2-1": "draining (drained by the drill of zone us-east-1/use1-az2)",
		"web-dc1-a-0":    "stale (cluster onprem-dc1 is unreachable)",
		"web-euw1-az1-0": "unhealthy (cluster eks-euw1 is dead)",
		"web-euw1-az2-1": "unhealthy (cluster eks-euw1 is dead)",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
	// Serving: az1-1 and the four stale on-prem endpoints.
	if n := a.Serving(); n != 5 {
		t.Errorf("serving %d, want 5", n)
	}
	// Envoy's view: P0 (az1) 50% healthy → 70% load; P1 (az2) drained → 0;
	// P2 (EU dead + on-prem stale) 4 of 8 → 70, which takes the rest: 30%.
	if got := a.PriorityLoad(locality.LoadOptions{}).Healthy; !slices.Equal(got, []uint32{70, 0, 30}) {
		t.Errorf("priority load %v", got)
	}
}

func TestClientKeyGroupsOnlyWhatMatters(t *testing.T) {
	plain := engine(t, locality.Config{})
	a, b := client(use1, "use1-az1"), client(use1, "use1-az1")
	b.Cluster, b.Labels = "other", map[string]string{"jurisdiction": "xx"}
	if plain.ClientKey(a) != plain.ClientKey(b) {
		t.Error("without label policies, cluster and labels must not split groups")
	}
	byLabel := engine(t, locality.Config{Policies: []v1alpha1.Object{failover("fo", v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"jurisdiction", "cluster"}})}})
	if byLabel.ClientKey(a) == byLabel.ClientKey(b) {
		t.Error("a policy reading jurisdiction and cluster must split groups")
	}
}

func TestNewRefusesInvalidPolicies(t *testing.T) {
	bad := failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"us-east-1"}}}})
	if _, err := locality.New(locality.Config{Policies: []v1alpha1.Object{bad}}); err == nil || !strings.Contains(err.Error(), "spec.failover[0].to[0]") {
		t.Fatalf("err %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
