package locality_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// The three-region lab topology of DESIGN.md: on-prem, US and EU (the last
// with jurisdiction=eu), two zones each, two endpoints per zone for every
// service.
var (
	onprem = registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Network: "net-onprem", Labels: map[string]string{"provider": "onprem", "jurisdiction": "us"}}
	use1   = registry.Cluster{Name: "eks-use1", Region: "us-east-1", Network: "net-us", Labels: map[string]string{"provider": "eks", "jurisdiction": "us"}}
	euw1   = registry.Cluster{Name: "eks-euw1", Region: "eu-west-1", Network: "net-eu", Labels: map[string]string{"provider": "eks", "jurisdiction": "eu"}}

	zones = map[string][]string{
		"onprem-dc1": {"dc1-a", "dc1-b"},
		"eks-use1":   {"use1-az1", "use1-az2"},
		"eks-euw1":   {"euw1-az1", "euw1-az2"},
	}

	web      = registry.ServiceKey{Namespace: "shop", Name: "web"}
	payments = registry.ServiceKey{Namespace: "shop", Name: "payments"}
)

func lab(t testing.TB, services ...registry.ServiceKey) *registry.Registry {
	t.Helper()
	r := registry.New(registry.Options{})
	ip := 1
	for _, cl := range []registry.Cluster{onprem, use1, euw1} {
		if err := r.SetCluster(cl); err != nil {
			t.Fatal(err)
		}
		var changes []registry.Change
		for _, svc := range services {
			changes = append(changes, registry.PutService(&registry.Service{Namespace: svc.Namespace, Name: svc.Name,
				Ports: []registry.ServicePort{{Port: 8080, Protocol: registry.ProtocolGRPC}}, Labels: map[string]string{"app": svc.Name}}))
			for _, z := range zones[cl.Name] {
				for i := range 2 {
					changes = append(changes, registry.PutEndpoint(&registry.Endpoint{
						Service: svc, ID: fmt.Sprintf("%s-%s-%d", svc.Name, z, i), Addresses: []string{fmt.Sprintf("10.%d.%d.%d", ip/65536, ip/256%256, ip%256)},
						Port: 8080, Locality: registry.Locality{Region: cl.Region, Zone: z}, Network: cl.Network,
					}))
					ip++
				}
			}
		}
		if _, err := r.Apply(cl.Name, changes...); err != nil {
			t.Fatal(err)
		}
	}
	return r
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
