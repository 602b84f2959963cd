package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/registry"
)

// endpointsSeen returns, for one meridiand, the demo's endpoints it sees:
// address → effective health.
func endpointsSeen(t *testing.T, c *lab.ClusterState) (map[string]registry.Health, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d, err := c.Registry(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]registry.Health{}
	for _, s := range d.Services {
		if s.Namespace != lab.Namespace {
			continue
		}
		for _, e := range s.Endpoints {
			out[net.JoinHostPort(e.Addresses[0], fmt.Sprint(e.Port))] = e.EffectiveHealth
		}
	}
	return out, nil
}

// TestDiscovery: every cluster's Kubernetes objects reach every control
// plane — each endpoint with the locality its Node gives and the version
// its Pod gives — and a readiness change in one cluster reaches all three
// registries; figures: that propagation time, both ways.
func TestDiscovery(t *testing.T) {
	m := theMesh(t)
	total := 0
	want := map[string]lab.Instance{}
	where := map[string]*lab.ClusterState{}
	for i := range m.lab.State.Clusters {
		c := &m.lab.State.Clusters[i]
		for _, in := range c.Instances {
			want[in.Address] = in
			where[in.Address] = c
			total++
		}
	}
	for i := range m.lab.State.Clusters {
		c := &m.lab.State.Clusters[i]
		d, err := c.Registry(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range d.Services {
			for _, e := range s.Endpoints {
				addr := net.JoinHostPort(e.Addresses[0], fmt.Sprint(e.Port))
				in, ok := want[addr]
				if !ok || s.Namespace != lab.Namespace {
					continue
				}
				n++
				owner := where[addr]
				if s.Name != in.Service || e.Cluster != owner.Name || e.Locality.Region != owner.Region || e.Locality.Zone != in.Zone || e.Labels["version"] != in.Version {
					t.Errorf("%s sees %s/%s at %s in %s %s version %q; want %s in %s %s/%s version %q",
						c.Name, s.Name, e.ID, addr, e.Cluster, e.Locality, e.Labels["version"], in.Service, owner.Name, owner.Region, in.Zone, in.Version)
				}
			}
		}
		if n != total {
			t.Errorf("%s sees %d of the %d demo endpoints", c.Name, n, total)
		}
	}
	t.Logf("every control plane sees all %d endpoints of the 3 clusters, with Node locality and Pod labels", total)

	// A readiness flip in eu-west-1, seen by all three registries.
	eu := m.cluster(t, "eks-euw1")
	kc := m.kube[eu.Name].Clientset()
	var flipped []string
	for _, in := range eu.Instances {
		if in.Service == lab.CustomerRecords && in.Zone == eu.Zones[1] {
			flipped = append(flipped, in.Address)
		}
	}
	for _, ready := range []bool{false, true} {
		start := time.Now()
		if err := setReady(t.Context(), kc, lab.CustomerRecords, eu.Zones[1:], ready); err != nil {
			t.Fatal(err)
		}
		seen := map[string]time.Duration{}
		testutil.Eventually(t, 30*time.Second, func() error {
			for i := range m.lab.State.Clusters {
				c := &m.lab.State.Clusters[i]
				if _, ok := seen[c.Name]; ok {
					continue
				}
				eps, err := endpointsSeen(t, c)
				if err != nil {
					return err
				}
				for _, a := range flipped {
					if eps[a].Serving() != ready {
						return fmt.Errorf("%s sees %s %s", c.Name, a, eps[a])
					}
				}
				seen[c.Name] = time.Since(start)
			}
			return nil
		})
		t.Logf("EndpointSlice ready=%t in eks-euw1 → registry of eks-euw1 %v, onprem-dc1 %v, eks-use1 %v",
			ready, seen["eks-euw1"].Round(time.Millisecond), seen["onprem-dc1"].Round(time.Millisecond), seen["eks-use1"].Round(time.Millisecond))
	}
}
