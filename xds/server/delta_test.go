package server_test

import (
	"context"
	"slices"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// deltaStream is an incremental stream.
type deltaStream struct {
	*adsStream[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse]
}

func (h *harness) delta(node *core.Node) *deltaStream {
	h.t.Helper()
	return &deltaStream{openStream(h, h.conn(), node,
		func(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient) (bidi[*discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse], error) {
			return c.DeltaAggregatedResources(ctx)
		},
		func(r *discovery.DeltaDiscoveryRequest, n *core.Node) { r.Node = n })}
}

func (d *deltaStream) ack(r *discovery.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

func deltaNames(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.Resources {
		out = append(out, res.Name)
	}
	return out
}

// TestDeltaSendsOnlyTheChangedResource: after the initial state, one
// endpoint change reaches a delta client as exactly one resource — the
// changed service's load assignment — and a deleted service as removals.
func TestDeltaSendsOnlyTheChangedResource(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	d := h.delta(nodeOf(t, "delta-1", nil, z1))
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"}})
	cds := d.recv()
	if n := len(cds.Resources); n != 4 {
		t.Fatalf("initial clusters: %v", deltaNames(cds))
	}
	for _, r := range cds.Resources {
		if r.Version == "" || r.Resource == nil {
			t.Fatalf("resource without version or body: %v", r)
		}
	}
	d.ack(cds)
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNamesSubscribe: []string{claA, claB, "outbound|1||nosuch.shop.svc.cluster.local"}})
	eds := d.recv()
	if got := deltaNames(eds); !slices.Equal(got, []string{claB, claA}) {
		t.Fatalf("initial load assignments = %v", got)
	}
	if !slices.Equal(eds.RemovedResources, []string{"outbound|1||nosuch.shop.svc.cluster.local"}) {
		t.Fatalf("a name that does not exist should come back as removed, got %v", eds.RemovedResources)
	}
	d.ack(eds)
	waitAcked(h, "delta-1", "EDS", eds.SystemVersionInfo)

	_, err := h.reg.Apply("c1", putEp("a", "a-2", "10.0.0.2", "r1/z1"))
	h.must(err)
	r := d.recv()
	if r.TypeUrl != translate.EndpointType || !slices.Equal(deltaNames(r), []string{claA}) || len(r.RemovedResources) != 0 {
		t.Fatalf("after one endpoint change: %s %v removed %v, want EDS [%s] only", r.TypeUrl, deltaNames(r), r.RemovedResources, claA)
	}
	d.ack(r)
	waitAcked(h, "delta-1", "EDS", r.SystemVersionInfo)

	// Deleting service b removes its cluster and its load assignment.
	_, err = h.reg.Apply("c1", registry.DeleteService(registry.ServiceKey{Namespace: "shop", Name: "b"}),
		registry.DeleteEndpoint(registry.EndpointKey{Service: registry.ServiceKey{Namespace: "shop", Name: "b"}, ID: "b-1"}))
	h.must(err)
	got := map[string][]string{}
	for range 2 {
		r := d.recv()
		if len(r.Resources) != 0 {
			t.Fatalf("deleting a service sent resources %v", deltaNames(r))
		}
		got[r.TypeUrl] = r.RemovedResources
		d.ack(r)
	}
	if !slices.Equal(got[translate.ClusterType], []string{claB}) || !slices.Equal(got[translate.EndpointType], []string{claB}) {
		t.Fatalf("removals = %v, want %s from CDS and EDS", got, claB)
	}
}
