package registry_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/meridian-mesh/meridian/registry"
)

// fill builds a registry with n endpoints spread over n/10 services.
func fill(b *testing.B, n int) *registry.Registry {
	b.Helper()
	r := registry.New(registry.Options{})
	if err := r.SetCluster(registry.Cluster{Name: "c", Region: "r"}); err != nil {
		b.Fatal(err)
	}
	changes := make([]registry.Change, 0, n+n/10)
	for s := range n / 10 {
		key := registry.ServiceKey{Namespace: "ns", Name: fmt.Sprintf("svc-%d", s)}
		changes = append(changes, registry.PutService(&registry.Service{Namespace: key.Namespace, Name: key.Name, Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}))
		for e := range 10 {
			changes = append(changes, registry.PutEndpoint(&registry.Endpoint{
				Service: key, ID: fmt.Sprintf("pod-%d", e), Addresses: []string{fmt.Sprintf("10.%d.%d.%d", s/256, s%256, e+1)},
				Port: 8080, Locality: registry.Locality{Region: "r", Zone: fmt.Sprintf("z%d", e%3)},
			}))
		}
	}
	if _, err := r.Apply("c", changes...); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkApplyOneEndpoint measures one endpoint change — validation,
// segment update, view publish and subscriber notification — at registry
// sizes 1k, 10k and 100k endpoints. The cost must not grow with the size.
func BenchmarkApplyOneEndpoint(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			r := fill(b, n)
			sub := r.Subscribe()
			defer sub.Close()
			key := registry.ServiceKey{Namespace: "ns", Name: "svc-7"}
			b.ResetTimer()
			for i := range b.N {
				e := &registry.Endpoint{Service: key, ID: "pod-3", Addresses: []string{fmt.Sprintf("10.200.%d.%d", (i/250)%250, i%250+1)}, Port: 8080, Locality: registry.Locality{Region: "r", Zone: "z0"}}
				if _, err := r.Apply("c", registry.PutEndpoint(e)); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 {
					sub.Take()
				}
			}
		})
	}
}

// BenchmarkNaiveRebuild is the baseline: a registry that copies its whole
// endpoint table to publish an immutable snapshot after one change.
func BenchmarkNaiveRebuild(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			table := map[registry.EndpointRef]*registry.Endpoint{}
			fill(b, n).View().Segment("c").EachEndpoint(func(e *registry.Endpoint) bool {
				table[registry.EndpointRef{Cluster: "c", EndpointKey: e.Key()}] = e
				return true
			})
			b.ResetTimer()
			for i := range b.N {
				next := maps.Clone(table)
				e := &registry.Endpoint{ID: "pod-3", Port: uint32(i%60000 + 1)}
				next[registry.EndpointRef{Cluster: "c", EndpointKey: e.Key()}] = e
				table = next
			}
		})
	}
}
