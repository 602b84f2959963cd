package locality_test

import (
	"math"
	"strings"
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

func TestWhatIfRegionOutage(t *testing.T) {
	v := lab(t, web, payments).View()
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly),
		failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"onprem-east", "eu-west-1"}}}})}})

	rep := e.WhatIf(v, locality.Target{Kind: locality.TargetRegion, Name: "us-east-1"}, nil)
	if len(rep.Stranded) != 0 {
		t.Fatalf("stranded %v", rep.Stranded)
	}
	imp := impactOf(t, rep, web)
	if imp.ServingBefore != 12 || imp.ServingAfter != 8 || math.Abs(imp.CapacityLeft-66.67) > 0.01 {
		t.Errorf("web capacity %d → %d (%.2f%%)", imp.ServingBefore, imp.ServingAfter, imp.CapacityLeft)
	}
	// A US client's traffic moves wholly to on-prem (first in its order).
	ci := clientImpact(t, imp, "us-east-1/use1-az1")
	if ci.Moved != 100 || len(ci.After) != 2 || ci.After[0].Locality.Region != "onprem-east" || ci.After[0].Percent != 50 {
		t.Errorf("US client after: %+v moved %.1f", ci.After, ci.Moved)
	}
	// An EU client does not move.
	if ci := clientImpact(t, imp, "eu-west-1/euw1-az1"); ci.Moved != 0 {
		t.Errorf("EU client moved %.1f", ci.Moved)
	}
	// The EU-only service never served from the US: nothing moves.
	for _, ci := range impactOf(t, rep, payments).Clients {
		if ci.Moved != 0 {
			t.Errorf("payments for %s moved %.1f", ci.Client.Locality, ci.Moved)
		}
	}
}

func TestWhatIfResidencyOutage(t *testing.T) {
	v := lab(t, web, payments).View()
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly)}})
	rep := e.WhatIf(v, locality.Target{Kind: locality.TargetCluster, Name: euw1.Name}, nil)
	if len(rep.Stranded) != 1 || rep.Stranded[0] != payments {
		t.Fatalf("stranded %v, want [payments]", rep.Stranded)
	}
	imp := impactOf(t, rep, payments)
	if !imp.Stranded || !imp.ResidencyOutage || imp.CapacityLeft != 0 {
		t.Errorf("payments impact %+v", imp)
	}
	// Every request fails: nothing goes to a US or on-prem endpoint.
	for _, ci := range imp.Clients {
		for _, s := range ci.After {
			if !s.Failing || s.Locality.Region != "eu-west-1" {
				t.Errorf("payments for %s after the outage: %+v", ci.Client.Locality, s)
			}
		}
	}
	// web is not resident: it fails over and keeps 2/3 of its capacity.
	if imp := impactOf(t, rep, web); imp.Stranded || imp.ServingAfter != 8 {
		t.Errorf("web impact %+v", imp)
	}
}

func TestWhatIfLeavesUntouchedServicesOut(t *testing.T) {
	r := lab(t, web)
	mustApply(t, r, use1.Name, registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "solo"}, ID: "a",
		Addresses: []string{"10.8.0.1"}, Port: 80, Locality: registry.Locality{Region: "us-east-1", Zone: "use1-az1"}}))
	rep := engine(t, locality.Config{}).WhatIf(r.View(), locality.Target{Kind: locality.TargetZone, Name: "eu-west-1/euw1-az2"}, nil)
	if len(rep.Services) != 1 || rep.Services[0].Service != web {
		t.Fatalf("services %+v", rep.Services)
	}
}

func TestParseTarget(t *testing.T) {
	for _, ok := range [][2]string{{"region", "us-east-1"}, {"zone", "us-east-1/use1-az1"}, {"cluster", "eks-use1"}} {
		if _, err := locality.ParseTarget(ok[0], ok[1]); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][3]string{
		{"region", "", "region is required"},
		{"zone", "us-east-1", "region/zone"},
		{"zone", "a/b/c", "region/zone"},
		{"cluster", "Bad_Name", "RFC 1123"},
		{"planet", "earth", "want region, zone or cluster"},
	} {
		if _, err := locality.ParseTarget(bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), bad[2]) {
			t.Errorf("%v: err %v, want it to mention %q", bad, err, bad[2])
		}
	}
}

func TestCheckResidency(t *testing.T) {
	v := lab(t, web, payments).View()
	stranding := residency("ap", v1alpha1.ResidencyRuleSpec{Selector: v1alpha1.ServiceSelector{Services: []string{"payments"}}, AllowedRegions: []string{"ap-south-1"}})
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly), stranding}})
	// The "ap" rule alone blocks every endpoint (rules apply in name order,
	// and the first that denies an endpoint is the one named).
	fs := e.CheckResidency(v)
	if len(fs) != 1 || fs[0].Object != "ResidencyRule shop/ap" {
		t.Fatalf("findings %v", fs)
	}
	// Two rules that only strand the service together are both named.
	us := residency("us", v1alpha1.ResidencyRuleSpec{Selector: v1alpha1.ServiceSelector{Services: []string{"payments"}}, AllowedRegions: []string{"us-east-1", "onprem-east"}})
	both := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly), us}}).CheckResidency(v)
	if len(both) != 2 || both[0].Object != "ResidencyRule shop/eu" || both[1].Object != "ResidencyRule shop/us" {
		t.Fatalf("findings %v", both)
	}
	for _, f := range append(fs, both...) {
		if f.Warning || !strings.Contains(f.Err.Error(), "leaves payments.shop with no allowed endpoint: its 12 endpoints run in eu-west-1, onprem-east, us-east-1") {
			t.Errorf("finding %s", f)
		}
	}
	// Alone, the EU rule leaves payments its EU endpoints: nothing to report.
	if fs := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly)}}).CheckResidency(v); len(fs) != 0 {
		t.Errorf("findings %v", fs)
	}
	ctx := locality.ContextOf(v)
	if strings.Join(ctx.Regions, ",") != "eu-west-1,onprem-east,us-east-1" || len(ctx.Clusters) != 3 || len(ctx.Services) != 2 {
		t.Errorf("context %+v", ctx)
	}
}

func TestResidencyStatus(t *testing.T) {
	r := lab(t, web, payments)
	audit := residency("us-audit", v1alpha1.ResidencyRuleSpec{Selector: v1alpha1.ServiceSelector{Services: []string{"web"}}, AllowedRegions: []string{"us-east-1"}, Mode: v1alpha1.ResidencyAudit})
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly), audit}})
	if got := (*locality.Engine)(nil).Residency(r.View()); got != nil {
		t.Fatalf("no engine: %v", got)
	}
	st := e.Residency(r.View())
	if len(st) != 2 || st[0].Service != payments || st[1].Service != web {
		t.Fatalf("statuses %+v", st)
	}
	// payments: 12 endpoints, the 4 in eu-west-1 allowed.
	if p := st[0]; len(p.Blocked) != 8 || len(p.Audited) != 0 || p.Serving != 4 || p.Blocked[0].Rule.Policy != "ResidencyRule shop/eu" {
		t.Errorf("payments: %d blocked (%v), %d audited, %d serving", len(p.Blocked), p.Blocked[0].Rule, len(p.Audited), p.Serving)
	}
	// web: audited only, everything still served.
	if w := st[1]; len(w.Blocked) != 0 || len(w.Audited) != 8 || w.Serving != 12 {
		t.Errorf("web: %d blocked, %d audited, %d serving", len(w.Blocked), len(w.Audited), w.Serving)
	}
	// An EU outage: payments serves nothing rather than leave the EU.
	if err := r.SetStatus(euw1.Name, registry.ClusterStatus{State: registry.Dead}); err != nil {
		t.Fatal(err)
	}
	if p := e.Residency(r.View())[0]; p.Serving != 0 || len(p.Blocked) != 8 {
		t.Errorf("payments in an EU outage: %d serving, %d blocked", p.Serving, len(p.Blocked))
	}
}

func impactOf(t *testing.T, rep locality.DrillReport, k registry.ServiceKey) locality.ServiceImpact {
	t.Helper()
	for _, s := range rep.Services {
		if s.Service == k {
			return s
		}
	}
	t.Fatalf("no impact for %s in %+v", k, rep.Services)
	return locality.ServiceImpact{}
}

func clientImpact(t *testing.T, imp locality.ServiceImpact, loc string) locality.ClientImpact {
	t.Helper()
	for _, c := range imp.Clients {
		if c.Client.Locality.String() == loc {
			return c
		}
	}
	t.Fatalf("no client %s", loc)
	return locality.ClientImpact{}
}
