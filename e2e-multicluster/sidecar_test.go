package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/lab/demopb"
	"github.com/meridian-mesh/meridian/lab/traffic"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// proxiedUsers starts a meridian-proxy in sidecar mode for users in a
// zone of a cluster — its xDS from that cluster's meridiand, an explicit
// upstream port for the service — and a generator calling through it; both
// stop when the test ends.
func (m *mesh) proxiedUsers(t *testing.T, cluster, zone string, rate float64, service string) *traffic.Generator {
	t.Helper()
	c := m.cluster(t, cluster)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := netip.MustParseAddrPort(lis.Addr().String())
	lis.Close()
	userSeq.Lock()
	userSeq.n++
	id := fmt.Sprintf("e2e-proxy-%s-%d", cluster, userSeq.n)
	userSeq.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sidecar.New(ctx, sidecar.Config{
		Server:    c.GRPC,
		Node:      xdsclient.NodeConfig{ID: id, Cluster: c.Name, Namespace: lab.Namespace, Locality: c.Region + "/" + zone},
		Upstreams: []sidecar.Upstream{{Listen: up, Host: service + "." + lab.Namespace + ".svc.cluster.local", Port: lab.DemoPort}},
		Logger:    slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("meridian-proxy: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-p.Ready(): // the first complete configuration applied, not only received
	case <-time.After(30 * time.Second):
		t.Fatalf("meridian-proxy never applied a complete configuration: %+v", p.Client().Status())
	}
	conn, err := grpc.NewClient("passthrough:///"+up.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runUsers(t, traffic.Config{Caller: id, Rate: rate, Timeout: time.Second,
		Targets: []traffic.Target{{Name: service, Client: demopb.NewDemoClient(conn)}}})
}

// TestSidecarRegionFailover is TestRegionFailover with meridian-proxy in
// the path: users on-prem call checkout through their sidecar, which
// follows the on-prem meridiand's xDS.
func TestSidecarRegionFailover(t *testing.T) {
	m := theMesh(t)
	onprem := m.cluster(t, "onprem-dc1")
	regionFailover(t, m, m.proxiedUsers(t, onprem.Name, onprem.Zones[0], 200, Checkout), "through meridian-proxy")
}
