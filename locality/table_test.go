package locality_test

import (
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// tablesEqual compares two tables service by service and client by client.
func tablesEqual(t *testing.T, got, want *locality.Table) {
	t.Helper()
	if got.Len() != want.Len() {
		t.Fatalf("%d services, want %d", got.Len(), want.Len())
	}
	for _, k := range want.View().ServiceKeys() {
		for _, c := range want.Clients() {
			g, ok1 := got.Assignment(k, c)
			w, ok2 := want.Assignment(k, c)
			if ok1 != ok2 {
				t.Fatalf("%s for %+v: present %v, want %v", k, c.Locality, ok1, ok2)
			}
			if d := cmp.Diff(w, g); d != "" {
				t.Fatalf("%s for %+v differs from a full build (-want +got):\n%s", k, c.Locality, d)
			}
		}
	}
}

func TestTableIncrementalMatchesFull(t *testing.T) {
	r := lab(t, web, payments)
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly),
		failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: "us-east-1", To: []string{"onprem-east"}}}})}})
	sub := r.Subscribe()
	defer sub.Close()
	v, d := sub.Take()
	table, recomputed := e.Build(v, nil).Update(v, d) // the Full first delivery rebuilds
	if len(recomputed) != 2 {
		t.Fatalf("full delta recomputed %v", recomputed)
	}
	steps := []struct {
		name   string
		change func()
		want   []registry.ServiceKey
	}{
		{"one endpoint turns unhealthy", func() {
			e, _ := r.View().Segment(use1.Name).Endpoint(registry.EndpointKey{Service: web, ID: "web-use1-az1-0"})
			cp := *e
			cp.Health = registry.Unhealthy
			mustApply(t, r, use1.Name, registry.PutEndpoint(&cp))
		}, []registry.ServiceKey{web}},
		{"an endpoint is deleted", func() {
			mustApply(t, r, euw1.Name, registry.DeleteEndpoint(registry.EndpointKey{Service: payments, ID: "payments-euw1-az1-0"}))
		}, []registry.ServiceKey{payments}},
		{"a cluster dies", func() {
			if err := r.SetStatus(euw1.Name, registry.ClusterStatus{State: registry.Dead}); err != nil {
				t.Fatal(err)
			}
		}, []registry.ServiceKey{payments, web}},
		{"an endpoint in a new zone adds a client", func() {
			mustApply(t, r, use1.Name, registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "new", Addresses: []string{"10.9.9.9"}, Port: 8080,
				Locality: registry.Locality{Region: "us-east-1", Zone: "use1-az3"}}))
		}, []registry.ServiceKey{payments, web}},
	}
	for _, s := range steps {
		s.change()
		v, d := sub.Take()
		var got []registry.ServiceKey
		table, got = table.Update(v, d)
		if !cmp.Equal(got, s.want) {
			t.Errorf("%s: recomputed %v, want %v", s.name, got, s.want)
		}
		tablesEqual(t, table, e.Build(v, nil))
	}
	if _, ok := table.Assignment(web, client(use1, "use1-az3")); !ok {
		t.Error("no assignment for the new zone's clients")
	}
}

func TestTableSharedAcrossGoroutines(t *testing.T) {
	r := lab(t, web, payments)
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly)}})
	table := e.Build(r.View(), nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, c := range table.Clients() {
				a, ok := table.Assignment(payments, c)
				if !ok || a.Serving() != 4 {
					t.Errorf("payments for %+v: %v %d", c.Locality, ok, a.Serving())
				}
			}
		})
	}
	e2, _ := r.View().Segment(use1.Name).Endpoint(registry.EndpointKey{Service: web, ID: "web-use1-az1-0"})
	cp := *e2
	cp.Health = registry.Draining
	mustApply(t, r, use1.Name, registry.PutEndpoint(&cp))
	next, _ := table.Update(r.View(), registry.Delta{Services: map[registry.ServiceKey]struct{}{web: {}}})
	wg.Wait()
	if a, _ := next.Assignment(web, client(use1, "use1-az1")); a.Serving() != 11 {
		t.Errorf("web after the change serves %d, want 11", a.Serving())
	}
	if a, _ := table.Assignment(web, client(use1, "use1-az1")); a.Serving() != 12 {
		t.Errorf("the old table changed: %d", a.Serving())
	}
}

func mustApply(t *testing.T, r *registry.Registry, cluster string, changes ...registry.Change) {
	t.Helper()
	if _, err := r.Apply(cluster, changes...); err != nil {
		t.Fatal(err)
	}
}
