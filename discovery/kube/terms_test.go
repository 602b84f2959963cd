package kube_test

import (
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/registry"
)

// TestRunAgain: a source runs once per term its replica leads the cluster.
// Between terms it writes nothing; the next term lists again and brings
// the segment up to date — removing what the previous term put and
// Kubernetes no longer has, but not another source's endpoints.
func TestRunAgain(t *testing.T) {
	t.Parallel()
	api := kubetest.Shared(t)
	vm := func(e *registry.Endpoint) bool { return strings.HasPrefix(e.ID, "vm-") }
	e := newEnv(t, api, func(c *kube.Config) { c.Foreign = vm })
	n1 := e.node("n1", map[string]string{"topology.kubernetes.io/region": "eu-west-1"})
	e.pod("web-0", "web", n1, labelsV1)
	e.pod("web-1", "web", n1, labelsV1)
	e.service(webService(svcPort("http", 80)))
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.1.0.10"), up("web-1", "10.1.0.11"))
	both := []*registry.Endpoint{
		e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.1.0.10"),
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
	}
	e.expect(both...)

	e.stop()
	other := &registry.Endpoint{Service: both[0].Service, ID: "vm-1", PortName: "http", Addresses: []string{"10.9.0.1"}, Port: 8080,
		Locality: registry.Locality{Region: "eu-west-1"}}
	if _, err := e.reg.Apply(cluster, registry.PutEndpoint(other)); err != nil {
		t.Fatal(err)
	}
	other.Cluster = cluster
	version := e.reg.View().Segment(cluster).Version()
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-1", "10.1.0.11"))
	e.deletePod("web-0")

	e.run()
	e.expect(e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"), other)
	if v := e.reg.View().Segment(cluster).Version(); v != version+1 {
		t.Fatalf("the second term changed the segment %d times, want once", v-version)
	}
	e.deleteSlice("web-a")
	e.expect(other)
}
