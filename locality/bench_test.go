package locality_test

import (
	"fmt"
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// benchMesh is 1,000 services with endpoints in 50 localities (5 clusters
// in 5 regions, 10 zones each, 2 endpoints per service and zone: 100,000
// endpoints), 50 client localities, a label-priority failover policy and a
// residency rule on a tenth of the services. It returns the table built on
// the first view, and a second view with one endpoint turned unhealthy
// plus the delta between them.
type benchMesh struct {
	engine  *locality.Engine
	clients []locality.Client
	before  *registry.View
	after   *registry.View
	delta   registry.Delta
}

func newBenchMesh(b *testing.B) *benchMesh {
	b.Helper()
	r := registry.New(registry.Options{})
	sub := r.Subscribe()
	defer sub.Close()
	regs := []string{"onprem-east", "us-east-1", "us-west-2", "eu-west-1", "eu-central-1"}
	for c, region := range regs {
		cl := registry.Cluster{Name: fmt.Sprintf("c%d", c), Region: region, Labels: map[string]string{"jurisdiction": jurisdictions[region]}}
		if err := r.SetCluster(cl); err != nil {
			b.Fatal(err)
		}
		var changes []registry.Change
		for s := range 1000 {
			svc := registry.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc%04d", s)}
			if c == 0 {
				changes = append(changes, registry.PutService(&registry.Service{Namespace: svc.Namespace, Name: svc.Name,
					Ports: []registry.ServicePort{{Port: 80}}, Labels: map[string]string{"resident": fmt.Sprint(s%10 == 0)}}))
			}
			for z := range 10 {
				for i := range 2 {
					n := len(changes)
					changes = append(changes, registry.PutEndpoint(&registry.Endpoint{Service: svc, ID: fmt.Sprintf("z%d-%d", z, i),
						Addresses: []string{fmt.Sprintf("10.%d.%d.%d", c, n/250%250, n%250+1)}, Port: 80,
						Locality: registry.Locality{Region: region, Zone: fmt.Sprintf("%s-z%d", region, z)}}))
				}
			}
		}
		if _, err := r.Apply(cl.Name, changes...); err != nil {
			b.Fatal(err)
		}
	}
	sub.Take()
	m := &benchMesh{before: r.View()}
	ep, _ := m.before.Segment("c1").Endpoint(registry.EndpointKey{Service: registry.ServiceKey{Namespace: "bench", Name: "svc0500"}, ID: "z3-1"})
	cp := *ep
	cp.Health = registry.Unhealthy
	if _, err := r.Apply("c1", registry.PutEndpoint(&cp)); err != nil {
		b.Fatal(err)
	}
	m.after, m.delta = sub.Take()
	var err error
	m.engine, err = locality.New(locality.Config{Policies: []v1alpha1.Object{
		&v1alpha1.FailoverPolicy{ObjectMeta: metaIn("bench", "fo"), Spec: v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"jurisdiction", "region", "zone"}}},
		&v1alpha1.ResidencyRule{ObjectMeta: metaIn("bench", "eu"), Spec: v1alpha1.ResidencyRuleSpec{
			Selector: v1alpha1.ServiceSelector{Labels: labelSelector("resident", "true")}, AllowedRegions: []string{"eu-west-1", "eu-central-1"}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	m.clients = locality.ClientsOf(m.before)
	if len(m.clients) != 50 {
		b.Fatalf("%d client localities, want 50", len(m.clients))
	}
	return m
}

// BenchmarkEngineFull computes every assignment: 1,000 services × 50
// client localities.
func BenchmarkEngineFull(b *testing.B) {
	m := newBenchMesh(b)
	b.ResetTimer()
	for range b.N {
		if t := m.engine.Build(m.after, m.clients); t.Len() != 1000 {
			b.Fatal(t.Len())
		}
	}
}

// BenchmarkEngineIncremental applies one endpoint change to a built table.
func BenchmarkEngineIncremental(b *testing.B) {
	m := newBenchMesh(b)
	base := m.engine.Build(m.before, m.clients)
	b.ResetTimer()
	for range b.N {
		if _, changed := base.Update(m.after, m.delta); len(changed) != 1 {
			b.Fatal(changed)
		}
	}
}
