package sidecar_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/internal/xdstest"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/locality/priority"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// conformance is one gRPC service with endpoints in three localities: two
// zones of the clients' region (r1/z1 with weight 3, r1/z2 with weight 1:
// priority 0, as the clients' own zone r1/z9 has none) and one zone of
// another region (r2/z1: priority 1). A stock grpc-go xDS client and a
// meridian-proxy sidecar get their resources from the same xds/server.
type conformance struct {
	*mesh
	backends map[string]*xdstest.Backend // by name; names start with the zone
	grpcgo   testgrpc.TestServiceClient
	proxied  testgrpc.TestServiceClient
}

const conformancePort = 9090

func newConformance(t *testing.T) *conformance {
	t.Helper()
	reg := registry.New(registry.Options{})
	for _, c := range []registry.Cluster{{Name: "c1", Region: "r1"}, {Name: "c2", Region: "r2"}} {
		if err := reg.SetCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	c := &conformance{mesh: &mesh{t: t, reg: reg}, backends: map[string]*xdstest.Backend{}}
	svc := &registry.Service{Namespace: "shop", Name: "grpc", Ports: []registry.ServicePort{{Port: conformancePort, Protocol: registry.ProtocolGRPC}}}
	for _, cl := range []string{"c1", "c2"} {
		if _, err := reg.Apply(cl, registry.PutService(svc)); err != nil {
			t.Fatal(err)
		}
	}
	add := func(cluster, zone string, n int) {
		for i := range n {
			name := fmt.Sprintf("%s-%d", strings.ReplaceAll(zone, "/", "-"), i)
			b := xdstest.StartBackend(t, name)
			c.backends[name] = b
			loc, _ := registry.ParseLocality(zone)
			if _, err := reg.Apply(cluster, registry.PutEndpoint(&registry.Endpoint{Service: svc.Key(), ID: name,
				Addresses: []string{"127.0.0.1"}, Port: uint32(b.Port), Locality: loc})); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("c1", "r1/z1", 3)
	add("c1", "r1/z2", 1)
	add("c2", "r2/z1", 2)
	c.xds = cptest.StartMeridian(t, reg, "c1", "")
	target := "xds:///" + host("grpc") + fmt.Sprintf(":%d", conformancePort)
	c.grpcgo = xdstest.Client(t, c.xds.Addr, target, map[string]any{
		"id": "grpc-go-1", "locality": map[string]any{"region": "r1", "zone": "z9"},
		"metadata": map[string]any{"mode": "proxyless", "cluster": "c1", "namespace": "shop"},
	})
	up := testutil.FreeAddr(t)
	startProxy(t, c.xds.Addr, sidecar.Config{
		Node:      xdsclient.NodeConfig{ID: "meridian-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", Locality: "r1/z9"},
		Upstreams: []sidecar.Upstream{{Listen: up, Host: host("grpc"), Port: conformancePort}},
	})
	conn, err := grpc.NewClient("passthrough:///"+up.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.proxied = testgrpc.NewTestServiceClient(conn)
	return c
}

// zones turns answers by backend into percentages by zone ("r1-z1").
func zones(answers map[string]int) map[string]float64 {
	total := 0
	for _, n := range answers {
		total += n
	}
	out := map[string]float64{}
	for name, n := range answers {
		z := name
		if i := strings.LastIndex(name, "-"); i > 0 {
			z = name[:i]
		}
		out[z] += 100 * float64(n) / float64(total)
	}
	return out
}

func (c *conformance) setHealth(zone string, n int, h registry.Health) {
	c.t.Helper()
	var changes []registry.Change
	cluster := "c1"
	if strings.HasPrefix(zone, "r2") {
		cluster = "c2"
	}
	for i := range n {
		name := fmt.Sprintf("%s-%d", strings.ReplaceAll(zone, "/", "-"), i)
		loc, _ := registry.ParseLocality(zone)
		changes = append(changes, registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "grpc"}, ID: name,
			Addresses: []string{"127.0.0.1"}, Port: uint32(c.backends[name].Port), Locality: loc, Health: h}))
	}
	if _, err := c.reg.Apply(cluster, changes...); err != nil {
		c.t.Fatal(err)
	}
}

// expected is what Envoy's rules give a client in r1/z9 under the
// registry's current health: locality's own Distribution.
func (c *conformance) expected() map[string]float64 {
	a := locality.Assign(c.reg.View(), registry.ServiceKey{Namespace: "shop", Name: "grpc"}, locality.Client{Locality: registry.Locality{Region: "r1", Zone: "z9"}, Cluster: "c1"})
	out := map[string]float64{}
	for _, s := range a.Distribution(locality.LoadOptions{}) {
		out[s.Locality.Region+"-"+s.Locality.Zone] += s.Percent
	}
	return out
}

func within(t *testing.T, what string, got, want map[string]float64, tol float64) bool {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	ok := true
	for k := range keys {
		if math.Abs(got[k]-want[k]) > tol {
			ok = false
		}
	}
	if !ok {
		t.Logf("%s: got %v, want %v (± %.0f)", what, round(got), round(want), tol)
	}
	return ok
}

func round(m map[string]float64) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprintf("%.1f%%", v)
	}
	return out
}

// TestConformanceWithGRPCGo: for the same xDS resources, grpc-go's xDS
// client and meridian-proxy split traffic across weighted localities and
// fail over between whole priority levels the same way (within ±5%);
// where a level is only partly healthy, meridian-proxy follows Envoy's
// overprovisioning rule — locality's PriorityLoad and Distribution —
// while grpc-go, which announces envoy.lb.does_not_support_overprovisioning,
// stays on the level.
func TestConformanceWithGRPCGo(t *testing.T) {
	c := newConformance(t)
	const n = 2000
	measure := func(cl testgrpc.TestServiceClient) map[string]float64 {
		return zones(xdstest.Answers(cl, n, true))
	}

	// Weighted localities, priority 0: 75/25.
	want := map[string]float64{"r1-z1": 75, "r1-z2": 25}
	g, m := measure(c.grpcgo), measure(c.proxied)
	t.Logf("healthy: grpc-go %v, meridian-proxy %v", round(g), round(m))
	if !within(t, "grpc-go", g, want, 5) || !within(t, "meridian-proxy", m, want, 5) || !within(t, "grpc-go vs meridian-proxy", g, m, 5) {
		t.Fatal("the weighted split differs")
	}

	// The whole of priority 0 down: both move everything to priority 1.
	c.setHealth("r1/z1", 3, registry.Unhealthy)
	c.setHealth("r1/z2", 1, registry.Unhealthy)
	want = map[string]float64{"r2-z1": 100}
	testutil.Eventually(t, 10*time.Second, func() error {
		if g, m := zones(xdstest.Answers(c.grpcgo, 50, true)), zones(xdstest.Answers(c.proxied, 50, true)); g["r2-z1"] != 100 || m["r2-z1"] != 100 {
			return fmt.Errorf("not failed over yet: grpc-go %v, meridian-proxy %v", round(g), round(m))
		}
		return nil
	})
	g, m = measure(c.grpcgo), measure(c.proxied)
	t.Logf("priority 0 down: grpc-go %v, meridian-proxy %v", round(g), round(m))
	if !within(t, "grpc-go", g, want, 5) || !within(t, "meridian-proxy", m, want, 5) {
		t.Fatal("failover of a whole level differs")
	}

	// Back, then only partly healthy: 2 of priority 0's 4 endpoints.
	c.setHealth("r1/z1", 3, registry.Healthy)
	c.setHealth("r1/z2", 1, registry.Healthy)
	c.setHealth("r1/z1", 2, registry.Unhealthy)
	envoy := c.expected()
	testutil.Eventually(t, 10*time.Second, func() error {
		if m := zones(xdstest.Answers(c.proxied, 200, true)); m["r2-z1"] < 10 || m["r1-z1"] == 0 {
			return fmt.Errorf("meridian-proxy not on the new health yet: %v", round(m))
		}
		return nil
	})
	g, m = measure(c.grpcgo), measure(c.proxied)
	t.Logf("priority 0 half healthy: Envoy's rule %v; meridian-proxy %v; grpc-go %v", round(envoy), round(m), round(g))
	if !within(t, "meridian-proxy vs locality.Distribution", m, envoy, 5) {
		t.Fatal("meridian-proxy does not follow Envoy's overprovisioning rule")
	}
	if g["r2-z1"] > 1 {
		t.Fatalf("grpc-go spilled to priority 1 (%v): it should stay on a partly healthy level", round(g))
	}
	load := priority.PriorityLoad([]priority.LevelHealth{{Healthy: 2, Total: 4}, {Healthy: 2, Total: 2}}, priority.LoadOptions{})
	if math.Abs(m["r2-z1"]-float64(load.Total(1))) > 5 {
		t.Fatalf("priority 1 got %.1f%%, PriorityLoad says %d%%", m["r2-z1"], load.Total(1))
	}
}
