package locality_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// The three-region lab topology of DESIGN.md (internal/meshtest).
var (
	onprem = meshtest.OnPrem
	use1   = meshtest.USE1
	euw1   = meshtest.EUW1

	web      = registry.ServiceKey{Namespace: "shop", Name: "web"}
	payments = registry.ServiceKey{Namespace: "shop", Name: "payments"}
)

func lab(t testing.TB, services ...registry.ServiceKey) *registry.Registry {
	t.Helper()
	return meshtest.Lab(t, services...)
}

func client(cl registry.Cluster, zone string) locality.Client {
	return locality.Client{Locality: registry.Locality{Region: cl.Region, Zone: zone}, Cluster: cl.Name, Network: cl.Network, Labels: cl.Labels}
}

// levels renders an assignment as "loc,loc | loc" for table tests.
func levels(a locality.Assignment) string {
	var ls []string
	for _, l := range a.Levels {
		var locs []string
		for _, le := range l.Localities {
			locs = append(locs, le.Locality.String())
		}
		ls = append(ls, strings.Join(locs, ","))
	}
	return strings.Join(ls, " | ")
}

func meta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: "shop", Name: name} }

func failover(name string, spec v1alpha1.FailoverPolicySpec) *v1alpha1.FailoverPolicy {
	return &v1alpha1.FailoverPolicy{ObjectMeta: meta(name), Spec: spec}
}

func residency(name string, spec v1alpha1.ResidencyRuleSpec) *v1alpha1.ResidencyRule {
	return &v1alpha1.ResidencyRule{ObjectMeta: meta(name), Spec: spec}
}

func engine(t testing.TB, cfg locality.Config) *locality.Engine {
	t.Helper()
	e, err := locality.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var euOnly = v1alpha1.ResidencyRuleSpec{Selector: v1alpha1.ServiceSelector{Services: []string{"payments"}}, AllowedRegions: []string{"eu-west-1"}}

func staleAt() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

func metaIn(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func labelSelector(k, v string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
}
