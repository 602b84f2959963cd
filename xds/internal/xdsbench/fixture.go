package main

import (
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meridian-mesh/meridian/registry"
)

const (
	benchCluster   = "c1"
	benchNamespace = "bench"
	zones          = 3
)

// fill builds the bench registry: services each with endpoints endpoints
// spread over three zones of one region; one service in five is gRPC on
// 9090, the others HTTP on 80.
func fill(services, endpoints int) (*registry.Registry, error) {
	r := registry.New(registry.Options{})
	if err := r.SetCluster(registry.Cluster{Name: benchCluster, Region: "r1"}); err != nil {
		return nil, err
	}
	changes := make([]registry.Change, 0, services*(endpoints+1))
	for s := range services {
		port := registry.ServicePort{Port: 80, Protocol: registry.ProtocolHTTP}
		if s%5 == 0 {
			port = registry.ServicePort{Port: 9090, Protocol: registry.ProtocolGRPC}
		}
		changes = append(changes, registry.PutService(&registry.Service{Namespace: benchNamespace, Name: serviceName(s), Ports: []registry.ServicePort{port}}))
		for e := range endpoints {
			changes = append(changes, registry.PutEndpoint(endpointOf(s, e, 0)))
		}
	}
	if _, err := r.Apply(benchCluster, changes...); err != nil {
		return nil, err
	}
	return r, nil
}

func serviceName(s int) string { return fmt.Sprintf("svc-%d", s) }

// endpointOf is endpoint e of service s; gen changes its address, so that
// each generation is a real change.
func endpointOf(s, e, gen int) *registry.Endpoint {
	return &registry.Endpoint{
		Service:   registry.ServiceKey{Namespace: benchNamespace, Name: serviceName(s)},
		ID:        fmt.Sprintf("pod-%d", e),
		Addresses: []string{fmt.Sprintf("10.%d.%d.%d", (s/250)%250, s%250, (e+gen*16)%250+1)},
		Port:      8080,
		Locality:  registry.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", e%zones)},
	}
}

// nodeOf is client i: a sidecar in zone i mod 3.
func nodeOf(i int) *core.Node {
	meta, _ := structpb.NewStruct(map[string]any{"mode": "sidecar", "cluster": benchCluster, "namespace": benchNamespace})
	return &core.Node{
		Id:       fmt.Sprintf("sidecar-%d", i),
		Locality: &core.Locality{Region: "r1", Zone: fmt.Sprintf("z%d", i%zones)},
		Metadata: meta,
	}
}
