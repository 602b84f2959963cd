package federation_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// Three control planes, each with its own etcd, converge on one global
// view; a later change to one endpoint reaches every view.
func TestThreeClustersConverge(t *testing.T) {
	l := newLab(t)
	var ms []*member
	for _, c := range []string{"east", "west", "north"} {
		ms = append(ms, l.start(c, memberOpts{withEtcd: true}))
	}
	for i, m := range ms {
		m.apply(t, registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 8080, Protocol: registry.ProtocolHTTP}}}),
			registry.PutEndpoint(endpoint(m.cluster.Name, "a", fmt.Sprintf("10.0.%d.1", i))),
			registry.PutEndpoint(endpoint(m.cluster.Name, "b", fmt.Sprintf("10.0.%d.2", i))))
	}
	testutil.Eventually(t, 30*time.Second, l.converged)
	for _, m := range ms {
		if n := len(m.reg.View().Endpoints(web)); n != 6 {
			t.Fatalf("%s sees %d endpoints of web, want 6", m.name, n)
		}
		for _, o := range ms {
			if o != m && m.status(o.cluster.Name) != registry.Alive {
				t.Fatalf("%s sees %s as %v", m.name, o.cluster.Name, m.status(o.cluster.Name))
			}
		}
	}
	ms[1].apply(t, registry.PutEndpoint(endpoint("west", "a", "10.9.9.9")))
	testutil.Eventually(t, 10*time.Second, l.converged)
	e, _ := ms[0].reg.View().Segment("west").Endpoint(registry.EndpointKey{Service: web, ID: "a"})
	if e.Address() != "10.9.9.9" {
		t.Fatalf("east sees west/a at %s", e.Address())
	}
}
