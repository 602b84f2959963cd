package xdsclient_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
	"github.com/meridian-mesh/meridian/xds/translate"
)

const (
	hostA    = "a.shop.svc.cluster.local"
	clusterA = "outbound|80||" + hostA
)

func seedRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	_, err := reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "a", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		endpoint("a-1", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func endpoint(id, addr string) registry.Change {
	return registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "a"}, ID: id,
		Addresses: []string{addr}, Port: 8080, Locality: registry.Locality{Region: "r1", Zone: "z1"}})
}

type running struct {
	c    *xdsclient.Client
	stop func()
}

func start(t *testing.T, cfg xdsclient.Config) *running {
	t.Helper()
	if cfg.Node == nil {
		n, err := xdsclient.NodeConfig{ID: "sc-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", Locality: "r1/z1", InboundPorts: []string{"8080"}}.Node()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Node = n
	}
	cfg.Decode = xdsconfig.NewDecoder(xdsconfig.Options{}).Decode
	cfg.Logger = cptest.Logger(t)
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	c, err := xdsclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r := &running{c: c, stop: func() { cancel(); wg.Wait() }}
	t.Cleanup(r.stop)
	return r
}

func waitSynced(t *testing.T, c *xdsclient.Client) {
	t.Helper()
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatalf("not synced: %+v; state: LDS=%v CDS=%v EDS=%v RDS=%v", c.Status(), c.State().Names(xdsclient.ListenerType),
			c.State().Names(xdsclient.ClusterType), c.State().Names(xdsclient.EndpointType), c.State().Names(xdsclient.RouteType))
	}
}

func hosts(c *xdsclient.Client) int {
	r, ok := c.State().Get(xdsclient.EndpointType, clusterA)
	if !ok {
		return -1
	}
	n := 0
	for _, l := range r.(*xdsconfig.Endpoints).Localities {
		n += len(l.Hosts)
	}
	return n
}

// TestMeridianServer runs the client against xds/server in both protocols:
// the sidecar's resources arrive, an endpoint change follows, the last
// configuration survives the control plane's absence, and the client
// reconnects when it returns.
func TestMeridianServer(t *testing.T) {
	for _, proto := range []xdsclient.Protocol{xdsclient.ProtocolAuto, xdsclient.ProtocolSotW} {
		name := string(proto)
		if name == "" {
			name = "auto"
		}
		t.Run(name, func(t *testing.T) {
			reg := seedRegistry(t)
			m := cptest.StartMeridian(t, reg, "c1", "")
			r := start(t, xdsclient.Config{Server: m.Addr, Protocol: proto})
			waitSynced(t, r.c)
			want := xdsclient.ProtocolDelta
			if proto == xdsclient.ProtocolSotW {
				want = xdsclient.ProtocolSotW
			}
			if st := r.c.Status(); !st.Connected || st.Protocol != want || st.Nacks != 0 {
				t.Fatalf("status = %+v, want connected over %s without NACKs", st, want)
			}
			st := r.c.State()
			for _, want := range []struct{ typ, name string }{
				{xdsclient.ListenerType, translate.VirtualOutboundListener},
				{xdsclient.ListenerType, translate.VirtualInboundListener},
				{xdsclient.ListenerType, translate.OutboundListenerName(80)},
				{xdsclient.RouteType, "80"},
				{xdsclient.ClusterType, clusterA},
				{xdsclient.ClusterType, translate.InboundClusterName(8080)},
				{xdsclient.EndpointType, clusterA},
			} {
				if _, ok := st.Get(want.typ, want.name); !ok {
					t.Errorf("no %s %q; have %v", want.typ, want.name, st.Names(want.typ))
				}
			}

			if _, err := reg.Apply("c1", endpoint("a-2", "10.0.0.2")); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				if n := hosts(r.c); n != 2 {
					return fmt.Errorf("%d hosts, want 2", n)
				}
				return nil
			})

			addr := m.Addr
			m.Stop()
			testutil.Eventually(t, 5*time.Second, func() error {
				if r.c.Status().Connected {
					return fmt.Errorf("still connected")
				}
				return nil
			})
			if n := hosts(r.c); n != 2 {
				t.Fatalf("control plane away: %d hosts, want the last accepted 2", n)
			}
			if _, err := reg.Apply("c1", endpoint("a-3", "10.0.0.3")); err != nil {
				t.Fatal(err)
			}
			cptest.StartMeridian(t, reg, "c1", addr)
			testutil.Eventually(t, 10*time.Second, func() error {
				if n := hosts(r.c); n != 3 {
					return fmt.Errorf("%d hosts, want 3 after reconnecting", n)
				}
				return nil
			})
		})
	}
}

func tcpListener(name string, port uint32, filter string) *listener.Listener {
	cfg, _ := anypb.New(&tcpproxy.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: "c"}})
	return &listener.Listener{
		Name: name,
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: filter, ConfigType: &listener.Filter_TypedConfig{TypedConfig: cfg}}}}},
	}
}

// TestFallbackAndNack: against a server without delta the client falls
// back to state of the world; a response with a resource it cannot honour
// is NACKed with the reason, and the previous listeners stay.
func TestFallbackAndNack(t *testing.T) {
	s := cptest.StartSnapshot(t, cptest.SnapshotOptions{SotWOnly: true})
	s.Set(t, "sc-1", map[string][]types.Resource{"type.googleapis.com/envoy.config.listener.v3.Listener": {tcpListener("good", 10001, wellknown.TCPProxy)}})
	r := start(t, xdsclient.Config{Server: s.Addr})
	waitSynced(t, r.c)
	if st := r.c.Status(); st.Protocol != xdsclient.ProtocolSotW {
		t.Fatalf("protocol = %s, want the state-of-the-world fallback", st.Protocol)
	}
	s.Set(t, "sc-1", map[string][]types.Resource{"type.googleapis.com/envoy.config.listener.v3.Listener": {
		tcpListener("good", 10001, wellknown.TCPProxy), tcpListener("bad", 10002, "envoy.filters.network.mongo_proxy")}})
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, n := range s.Nacks() {
			if strings.Contains(n, "bad") && strings.Contains(n, `unsupported network filter "envoy.filters.network.mongo_proxy"`) {
				return nil
			}
		}
		return fmt.Errorf("no NACK naming the listener and filter; got %q", s.Nacks())
	})
	if got := r.c.State().Names(xdsclient.ListenerType); len(got) != 1 || got[0] != "good" {
		t.Fatalf("listeners after the NACK = %v, want the previous [good]", got)
	}
	if st := r.c.Status(); st.Nacks == 0 || !strings.Contains(st.LastNack, "mongo_proxy") {
		t.Fatalf("status = %+v, want the NACK recorded", st)
	}
	// A later good version is accepted.
	s.Set(t, "sc-1", map[string][]types.Resource{"type.googleapis.com/envoy.config.listener.v3.Listener": {tcpListener("better", 10003, wellknown.TCPProxy)}})
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := r.c.State().Names(xdsclient.ListenerType); len(got) != 1 || got[0] != "better" {
			return fmt.Errorf("listeners = %v", got)
		}
		return nil
	})
}

// TestNodeContract: the node meridian-proxy sends is what xds/translate
// reads, field by field.
func TestNodeContract(t *testing.T) {
	for _, pair := range [][2]string{
		{xdsclient.MetaMode, translate.MetaMode}, {xdsclient.MetaCluster, translate.MetaCluster}, {xdsclient.MetaNamespace, translate.MetaNamespace},
		{xdsclient.MetaServiceAccount, translate.MetaServiceAccount}, {xdsclient.MetaInboundPorts, translate.MetaInboundPorts},
		{xdsclient.MetaListenerPort, translate.MetaListenerPort}, {xdsclient.MetaLabels, translate.MetaLabels},
		{xdsclient.MetaOutboundPolicy, translate.MetaOutboundPolicy}, {xdsclient.ModeSidecar, string(translate.ModeSidecar)},
		{xdsclient.ModeIngress, string(translate.ModeIngress)}, {xdsclient.ModeEgress, string(translate.ModeEgress)}, {xdsclient.ModeEastWest, string(translate.ModeEastWest)},
	} {
		if pair[0] != pair[1] {
			t.Errorf("meridian-proxy says %q, translate %q", pair[0], pair[1])
		}
	}
	n, err := xdsclient.NodeConfig{ID: "p", Mode: xdsclient.ModeEastWest, Cluster: "eks-use1", Namespace: "shop", ServiceAccount: "web",
		Locality: "us-east-1/use1-az1", InboundPorts: []string{"8080/http", "9090"}, ListenerPort: 15443,
		Labels: map[string]string{"app": "web", "version": "v2"}, OutboundTrafficPolicy: xdsclient.RegistryOnly}.Node()
	if err != nil {
		t.Fatal(err)
	}
	p, err := translate.ParseNode(n, translate.NodeDefaults{})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "p" || p.Mode != translate.ModeEastWest || p.Cluster != "eks-use1" || p.Namespace != "shop" || p.ServiceAccount != "web" ||
		p.Locality != (registry.Locality{Region: "us-east-1", Zone: "use1-az1"}) || len(p.InboundPorts) != 2 || p.ListenerPort != 15443 ||
		p.Labels["version"] != "v2" || !p.RegistryOnly {
		t.Fatalf("translate reads %+v", p)
	}
}

func TestConfigErrors(t *testing.T) {
	node, _ := xdsclient.NodeConfig{ID: "x"}.Node()
	dec := xdsconfig.NewDecoder(xdsconfig.Options{}).Decode
	for _, tc := range []struct {
		cfg  xdsclient.Config
		want string
	}{
		{xdsclient.Config{Node: node, Decode: dec}, "Server is required"},
		{xdsclient.Config{Server: "x:1", Decode: dec}, "Node with an id is required"},
		{xdsclient.Config{Server: "x:1", Node: node}, "Decode is required"},
		{xdsclient.Config{Server: "x:1", Node: node, Decode: dec, Protocol: "rest"}, `Protocol "rest"`},
	} {
		if _, err := xdsclient.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct {
		n    xdsclient.NodeConfig
		want string
	}{
		{xdsclient.NodeConfig{}, "id is required"},
		{xdsclient.NodeConfig{ID: "a", Locality: "r1//z"}, "locality"},
		{xdsclient.NodeConfig{ID: "a", Mode: "mesh"}, `mode "mesh"`},
	} {
		if _, err := tc.n.Node(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Node(%+v) = %v, want %q", tc.n, err, tc.want)
		}
	}
}
