package server

import (
	"context"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	gcpstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// TestDroppedResponseIsTakenBack drives the state-of-the-world loop's
// steps by hand to reach what timing only sometimes gives: a push for a
// load assignment is recorded in place in the stream's returned versions,
// then dropped unsent because a newer request of its type arrived. The
// versions are taken back, so that the next watch sends the change again
// instead of believing the proxy has it.
func TestDroppedResponseIsTakenBack(t *testing.T) {
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	ep := func(addr string) registry.Change {
		return registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "a"}, ID: "a-0",
			Addresses: []string{addr}, Port: 8080, Locality: registry.Locality{Region: "r1", Zone: "z1"}})
	}
	if _, err := reg.Apply("c1", registry.PutService(&registry.Service{Namespace: "shop", Name: "a", Ports: []registry.ServicePort{{Port: 80}}}),
		registry.PutService(&registry.Service{Namespace: "shop", Name: "b", Ports: []registry.ServicePort{{Port: 80}}}), ep("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Registry: reg, Cluster: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	s.view = reg.View()
	claA, claB := translate.ClusterName(80, "a.shop.svc.cluster.local"), translate.ClusterName(80, "b.shop.svc.cluster.local")
	names := []string{claA, claB}
	key := streamKey{id: 1}
	if err := s.open(context.Background(), key, resource.AnyType); err != nil {
		t.Fatal(err)
	}
	ch := make(chan cache.Response, 8)
	sub := gcpstream.NewSotwSubscription(names, false)
	request := func(nonce string) *discovery.DiscoveryRequest {
		t.Helper()
		req := &discovery.DiscoveryRequest{Node: &core.Node{Id: "n"}, TypeUrl: translate.EndpointType, ResourceNames: names, ResponseNonce: nonce}
		if err := s.request(key, req, req.Node, req.TypeUrl, nonce, nil); err != nil {
			t.Fatal(err)
		}
		return req
	}
	send := func(res cache.Response, nonce string) {
		out, _ := res.GetDiscoveryResponse()
		out.Nonce = nonce
		sub.SetReturnedResources(res.GetReturnedResources())
		s.OnStreamResponse(context.Background(), key.id, res.GetRequest(), out)
	}

	cancel, _ := s.CreateWatch(request(""), sub, ch)
	s.buildNewGroups()
	first := <-ch
	send(first, "1")
	v1 := sub.ReturnedResources()[claA]
	cancel()
	cancel, _ = s.CreateWatch(request("1"), sub, ch) // the ACK: nothing to send

	if _, err := reg.Apply("c1", ep("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	s.update(reg.View(), registry.Delta{Services: map[registry.ServiceKey]struct{}{{Namespace: "shop", Name: "a"}: {}}}, time.Now())
	dropped := <-ch
	v2 := sub.ReturnedResources()[claA]
	if v2 == v1 || len(dropped.(*cache.PassthroughResponse).DiscoveryResponse.Resources) != 1 {
		t.Fatalf("the push was not recorded in place: %q -> %q", v1, v2)
	}
	// A newer request of the type arrives before the push went out: the
	// loop drops it and opens a new watch.
	cancel()
	sub.SetResourceSubscription(names)
	cancel, _ = s.CreateWatch(request("1"), sub, ch)
	defer cancel()
	select {
	case again := <-ch:
		r := again.(*cache.PassthroughResponse)
		if len(r.DiscoveryResponse.Resources) != 1 || r.ReturnedResources[claA] != v2 {
			t.Fatalf("resent %d resources, version %q, want the change again", len(r.DiscoveryResponse.Resources), r.ReturnedResources[claA])
		}
	default:
		t.Fatalf("the dropped change was not sent again: the stream believes it has version %q", sub.ReturnedResources()[claA])
	}
}
