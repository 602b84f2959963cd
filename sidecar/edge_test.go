package sidecar_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

func anyOf(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(ap netip.AddrPort) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: ap.Addr().String(), PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(ap.Port())}}}}
}

// edgeResources is a gateway listener on addr with tight edge limits (8 KiB
// of headers, 20 headers, 300ms to send them), routing everything to one
// static backend.
func edgeResources(t testing.TB, addr, backend netip.AddrPort) map[resource.Type][]types.Resource {
	m := &hcm.HttpConnectionManager{
		StatPrefix:                "edge",
		MaxRequestHeadersKb:       wrapperspb.UInt32(8),
		CommonHttpProtocolOptions: &core.HttpProtocolOptions{MaxHeadersCount: wrapperspb.UInt32(20)},
		RequestHeadersTimeout:     durationpb.New(300 * time.Millisecond),
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{Name: "edge",
			VirtualHosts: []*route.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*route.Route{{
				Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "backend"}}},
			}}}}}},
		HttpFilters: []*hcm.HttpFilter{{Name: wellknown.Router, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &router.Router{})}}},
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {&listener.Listener{Name: "edge", Address: sockAddr(addr), FilterChains: []*listener.FilterChain{{
			Filters: []*listener.Filter{{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: anyOf(t, m)}}}}}}},
		resource.ClusterType: {&cluster.Cluster{Name: "backend", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
			ConnectTimeout: durationpb.New(time.Second),
			LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: sockAddr(backend)}}}},
			}}}}},
	}
}

// raw sends bytes on a fresh connection and returns the status line the
// proxy answers, or "" when it closes without answering.
func raw(t *testing.T, addr netip.AddrPort, data string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, data)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestBadInputAtTheEdge: malformed requests, oversized headers, header
// floods, slow clients, TLS garbage and connection floods are refused
// within the listener's limits and counted by reason, each costing only
// its own connection: a well-behaved client is served throughout.
func TestBadInputAtTheEdge(t *testing.T) {
	cp := cptest.StartSnapshot(t, cptest.SnapshotOptions{})
	b := startBackend(t, "app")
	edge := testutil.FreeAddr(t)
	cp.Set(t, "edge", edgeResources(t, edge, b.addr))
	px := startProxy(t, cp.Addr, sidecar.Config{
		Node:           xdsclient.NodeConfig{ID: "edge", Mode: xdsclient.ModeIngress, Cluster: "c1", Namespace: "shop"},
		MaxConnections: 100,
	})
	good := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + edge.String() + "/ok"
	eventually2xx(t, good, url)

	// A well-behaved client keeps being served while the rest happens.
	stop := make(chan struct{})
	var served, failed int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if code, _, _ := get(t, good, url); code == 200 {
				served++
			} else {
				failed++
			}
		}
	}()

	if got := raw(t, edge, "GARBAGE\r\n\r\n"); !strings.Contains(got, "400") {
		t.Errorf("malformed request line: %q, want 400", got)
	}
	if got := raw(t, edge, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n"); !strings.Contains(got, "431") {
		t.Errorf("oversized header: %q, want 431", got)
	}
	var flood strings.Builder
	flood.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	for i := range 50 {
		fmt.Fprintf(&flood, "X-H%d: v\r\n", i)
	}
	flood.WriteString("\r\n")
	if got := raw(t, edge, flood.String()); !strings.Contains(got, "431") {
		t.Errorf("header flood: %q, want 431", got)
	}
	// Slow clients: each sends half a request and stalls; the proxy closes
	// them after the headers timeout.
	var slow []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", edge.String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		slow = append(slow, c)
	}
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("a slow client was not closed by the proxy: %v", err)
		}
		c.Close()
	}
	// TLS garbage on a plaintext HTTP listener is a malformed request.
	if got := raw(t, edge, "\x16\x03\x01\x02\x00\x01\xff\xff\xff\xff\xff garbage\r\n\r\n"); strings.Contains(got, "200") {
		t.Errorf("TLS garbage got %q", got)
	}
	// A connection flood beyond MaxConnections: the excess is closed.
	var flooders []net.Conn
	for range 120 {
		c, err := net.Dial("tcp", edge.String())
		if err != nil {
			break
		}
		flooders = append(flooders, c)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := px.metric(t, "meridian_proxy_downstream_rejected_total", "reason", "connection_limit"); v < 1 {
			return fmt.Errorf("connection_limit rejections: %v", v)
		}
		return nil
	})
	for _, c := range flooders {
		c.Close()
	}
	close(stop)
	wg.Wait()
	for _, reason := range []string{"malformed", "header_too_large", "too_many_headers", "header_timeout"} {
		if v := px.metric(t, "meridian_proxy_downstream_rejected_total", "reason", reason); v < 1 {
			t.Errorf("rejections for %s: %v", reason, v)
		}
	}
	if served == 0 {
		t.Fatalf("the well-behaved client was never served (%d failures)", failed)
	}
	t.Logf("the well-behaved client: %d served, %d failed (the connection flood may refuse some)", served, failed)
	eventually2xx(t, good, url)
}

// TestBadTLSAtTheGateway: TLS garbage and a handshake with the wrong
// server name's expectations fail the handshake, counted.
func TestBadTLSAtTheGateway(t *testing.T) {
	cp := cptest.StartSnapshot(t, cptest.SnapshotOptions{})
	b := startBackend(t, "app")
	edge := testutil.FreeAddr(t)
	cp.Set(t, "edge", edgeResources(t, edge, b.addr))
	certPEM, keyPEM, pool := selfSigned(t, "shop.example")
	px := startProxy(t, cp.Addr, sidecar.Config{
		Node:        xdsclient.NodeConfig{ID: "edge", Mode: xdsclient.ModeIngress, Cluster: "c1", Namespace: "shop"},
		GatewayCert: certPEM, GatewayKey: keyPEM,
	})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example"}}}
	eventually2xx(t, c, "https://"+edge.String()+"/")
	raw(t, edge, "\x16\x03\x01\x00\x05\xde\xad\xbe\xef\x00")
	raw(t, edge, "not tls at all\r\n\r\n")
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := px.metric(t, "meridian_proxy_downstream_rejected_total", "reason", "tls_handshake"); v < 2 {
			return fmt.Errorf("handshake failures counted: %v", v)
		}
		return nil
	})
	eventually2xx(t, c, "https://"+edge.String()+"/")
}
