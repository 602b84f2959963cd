package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// deltaStream is a hand-driven incremental ADS stream over real gRPC.
type deltaStream struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	resps  chan *discovery.DeltaDiscoveryResponse
	errs   chan error
}

func (h *harness) delta(node *core.Node) *deltaStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn()).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	d := &deltaStream{t: h.t, stream: st, node: node, resps: make(chan *discovery.DeltaDiscoveryResponse, 100), errs: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := st.Recv()
			if err != nil {
				d.errs <- err
				return
			}
			d.resps <- r
		}
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	return d
}

func (d *deltaStream) send(req *discovery.DeltaDiscoveryRequest) {
	d.t.Helper()
	if d.node != nil {
		req.Node, d.node = d.node, nil
	}
	if err := d.stream.Send(req); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deltaStream) recv() *discovery.DeltaDiscoveryResponse {
	d.t.Helper()
	select {
	case r := <-d.resps:
		return r
	case err := <-d.errs:
		d.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		d.t.Fatal("no delta response within 10s")
	}
	return nil
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
