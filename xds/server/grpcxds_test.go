package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/discovery/workload"
	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/internal/xdstest"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// clock is a settable clock for the workload API's TTLs.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lab is a control plane as meridiand assembles it — embedded etcd, the
// registry, the Workload API and the xDS server on one gRPC server over
// loopback — with real gRPC backends registered through the Workload API.
type lab struct {
	*harness
	clock    *clock
	workload workloadpb.WorkloadServiceClient
	backends map[string]*backend // by name
}

type backend struct {
	name, locality string
	port           int
	id             string // workload id
}

const ttl = 10 * time.Second

func newLab(t *testing.T) *lab {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	wl, err := workload.New(workload.Config{Cluster: "c1", Registry: reg, Store: st, Metrics: prometheus.NewRegistry(),
		Log: slog.New(slog.DiscardHandler), Grace: time.Hour, SweepInterval: 5 * time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpts{reg: reg, register: func(g *grpc.Server) { wl.Register(g) }})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = wl.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &lab{harness: h, clock: clk, workload: workloadpb.NewWorkloadServiceClient(h.conn()), backends: map[string]*backend{}}
}

// backend starts a gRPC backend and registers it as service echo.shop,
// with labels as key, value pairs.
func (l *lab) backend(name, locality string, labels ...string) *backend {
	l.t.Helper()
	eb := xdstest.StartBackend(l.t, name)
	b := &backend{name: name, locality: locality, port: eb.Port}
	lbls := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		lbls[labels[i]] = labels[i+1]
	}
	resp, err := l.workload.Register(context.Background(), &workloadpb.RegisterRequest{
		Service: "echo", Namespace: "shop", Address: eb.Addr, PortName: "grpc", Protocol: "grpc",
		Locality: locality, Ttl: durationpb.New(ttl), Labels: lbls,
	})
	l.must(err)
	b.id = resp.GetWorkload().GetId()
	l.backends[name] = b
	return b
}

func (l *lab) heartbeat(names ...string) {
	l.t.Helper()
	for _, n := range names {
		_, err := l.workload.Heartbeat(context.Background(), &workloadpb.HeartbeatRequest{Id: l.backends[n].id})
		l.must(err)
	}
}

// target is the xds:/// name of echo.shop: the workload API numbers the
// service port by the lowest port registered.
func (l *lab) target() string {
	port := 0
	for _, b := range l.backends {
		if port == 0 || b.port < port {
			port = b.port
		}
	}
	return fmt.Sprintf("xds:///echo.shop.svc.cluster.local:%d", port)
}

// client is a stock grpc-go xDS client whose bootstrap points at the lab.
func (l *lab) client(target string, node map[string]any) testgrpc.TestServiceClient {
	return xdstest.Client(l.t, l.addr, target, node)
}

var clientNode = map[string]any{
	"id":       "echo-client",
	"locality": map[string]any{"region": "r1", "zone": "z1"},
	"metadata": map[string]any{"cluster": "c1", "namespace": "shop"},
}

// calls makes n RPCs, waiting for the channel to be ready, and counts
// the answers by backend (failures by status code).
func calls(c testgrpc.TestServiceClient, n int) map[string]int { return xdstest.Answers(c, n, true) }

// TestProxylessGRPC drives grpc-go's own xDS client against the server:
// the 3:1 split across two priority-0 localities, failover to priority 1
// when every priority-0 endpoint turns unhealthy, and the way back.
func TestProxylessGRPC(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	// Client in r1/z1: subzones sa (3 backends) and sb (1) are both
	// priority 0, weighted 3:1 by endpoint count; r1/z2 is priority 1.
	for _, b := range []struct{ name, loc string }{
		{"a1", "r1/z1/sa"}, {"a2", "r1/z1/sa"}, {"a3", "r1/z1/sa"}, {"b1", "r1/z1/sb"}, {"c1", "r1/z2"},
	} {
		l.backend(b.name, b.loc)
	}
	c := l.client(l.target(), clientNode)

	// Wait until the client has the full assignment (the registrations
	// above are debounced into one push, but the client may have connected
	// before it).
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := calls(c, 40); len(got) < 4 {
			return fmt.Errorf("answers from %v, want all four priority-0 backends", got)
		}
		return nil
	})
	got := calls(c, 2000)
	sa := got["a1"] + got["a2"] + got["a3"]
	sb := got["b1"]
	t.Logf("2000 RPCs: %v (sa %d, sb %d)", got, sa, sb)
	if got["c1"] != 0 {
		t.Errorf("priority 1 got %d RPCs while priority 0 was healthy", got["c1"])
	}
	if share := float64(sa) / 2000; share < 0.70 || share > 0.80 {
		t.Errorf("locality sa got %.1f%% of RPCs, want 75%% ± 5%%", share*100)
	}
	if share := float64(sb) / 2000; share < 0.20 || share > 0.30 {
		t.Errorf("locality sb got %.1f%% of RPCs, want 25%% ± 5%%", share*100)
	}

	// Priority 0 stops heartbeating; c1 keeps going: after the TTL the
	// Workload API marks a1..b1 unhealthy, EDS says UNHEALTHY, and grpc-go
	// moves to priority 1.
	l.clock.advance(ttl/2 + time.Second)
	l.heartbeat("c1")
	l.clock.advance(ttl/2 + time.Second)
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := calls(c, 20); got["c1"] != 20 {
			return fmt.Errorf("after priority 0 went unhealthy: %v, want every RPC on c1", got)
		}
		return nil
	})
	if got := calls(c, 200); got["c1"] != 200 {
		t.Fatalf("failover: %v, want all 200 on c1", got)
	}

	// They come back: traffic returns to priority 0.
	l.heartbeat("a1", "a2", "a3", "b1")
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := calls(c, 40); got["c1"] != 0 {
			return fmt.Errorf("after priority 0 returned: %v, want none on c1", got)
		}
		return nil
	})
	back := calls(c, 400)
	if back["c1"] != 0 || back["a1"]+back["a2"]+back["a3"] == 0 || back["b1"] == 0 {
		t.Fatalf("traffic did not come back to priority 0: %v", back)
	}
	if n := l.metric("meridian_xds_nacks_total", "type", "EDS") + l.metric("meridian_xds_nacks_total", "type", "LDS") +
		l.metric("meridian_xds_nacks_total", "type", "RDS") + l.metric("meridian_xds_nacks_total", "type", "CDS"); n != 0 {
		t.Fatalf("grpc-go NACKed %v responses:\n%s", n, l.logs.String())
	}
	if n := l.metric("meridian_xds_connected_proxies", "mode", "proxyless", "cluster", "c1"); n != 1 {
		t.Errorf("connected proxyless clients = %v, want 1", n)
	}
}

// TestProxylessUnknownTargetAndBadNode: grpc-go clients with a target that
// does not exist, or with garbage node metadata, fail with UNAVAILABLE (the
// server logs why: the stream's InvalidArgument status names the field,
// which grpc-go logs but does not put in the RPC's error), while a good
// client on the same server keeps working. The server answers an unknown
// listener at once, empty; grpc-go only declares a resource it never had
// missing when its 15s resource timer fires, so that case takes 15s.
func TestProxylessUnknownTargetAndBadNode(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.backend("a1", "r1/z1")
	good := l.client(l.target(), clientNode)
	if got := calls(good, 5); got["a1"] != 5 {
		t.Fatalf("good client: %v", got)
	}

	badNode := map[string]any{"id": "garbage", "metadata": map[string]any{"mode": 42}}
	for _, tc := range []struct {
		name, target string
		node         map[string]any
	}{
		{"unknown target", "xds:///nosuch.shop.svc.cluster.local:1", clientNode},
		{"garbage metadata", l.target(), badNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.client(tc.target, tc.node)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("RPC error = %v, want UNAVAILABLE", err)
			}
		})
	}
	if got := calls(good, 5); got["a1"] != 5 {
		t.Fatalf("good client after the bad ones: %v", got)
	}
	if n := l.metric("meridian_xds_rejected_streams_total", "reason", "node"); n < 1 {
		t.Errorf("rejected streams = %v", n)
	}
	if logs := l.logs.String(); !contains(logs, "node=garbage") || !contains(logs, "node.metadata[mode]") || !contains(logs, "nosuch.shop.svc.cluster.local:1") {
		t.Errorf("no log lines for the garbage node and the unknown listener:\n%s", logs)
	}
}

// TestProxylessWeightedRoute: a TrafficRoute splitting echo 90/10 between
// two subsets of a DestinationPolicy reaches grpc-go as weighted clusters,
// and 2,000 RPCs split accordingly.
func TestProxylessWeightedRoute(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.backend("v1-a", "r1/z1", "version", "v1")
	l.backend("v1-b", "r1/z1", "version", "v1")
	l.backend("v2-a", "r1/z1", "version", "v2")
	objs, err := v1alpha1.Decode([]byte(`apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: echo, namespace: shop}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: echo-canary, namespace: shop}
spec:
  hosts: [echo]
  http:
  - route:
    - {host: echo, subset: v1, weight: 90}
    - {host: echo, subset: v2, weight: 10}
`))
	l.must(err)
	l.must(l.xds.SetPolicies(objs))
	c := l.client(l.target(), clientNode)
	testutil.Eventually(t, 20*time.Second, func() error {
		got := calls(c, 100)
		if got["v2-a"] == 0 || got["v2-a"] > 30 {
			return fmt.Errorf("answers %v, want the 90/10 split in force", got)
		}
		return nil
	})
	got := calls(c, 2000)
	v1 := got["v1-a"] + got["v1-b"]
	t.Logf("2000 RPCs: %v", got)
	if share := float64(v1) / 2000; share < 0.85 || share > 0.95 {
		t.Errorf("subset v1 got %.1f%% of RPCs, want 90%% ± 5%%", share*100)
	}
	if share := float64(got["v2-a"]) / 2000; share < 0.05 || share > 0.15 {
		t.Errorf("subset v2 got %.1f%% of RPCs, want 10%% ± 5%%", share*100)
	}

	// A bad policy set is refused and changes nothing.
	bad := []v1alpha1.Object{&v1alpha1.TrafficRoute{}}
	bad[0].SetName("nameless-hosts")
	bad[0].SetNamespace("shop")
	if err := l.xds.SetPolicies(bad); err == nil || !contains(err.Error(), "TrafficRoute shop/nameless-hosts") {
		t.Fatalf("SetPolicies(bad) = %v, want an error naming the object", err)
	}
	if got := calls(c, 200); got["v2-a"] == 0 || got["v1-a"]+got["v1-b"] < 150 {
		t.Fatalf("after a refused policy set: %v", got)
	}
}
