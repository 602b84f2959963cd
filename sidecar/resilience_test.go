package sidecar_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
)

// silentListener accepts connections and never answers: a request sent
// to it waits until some timeout ends it.
type silentListener struct {
	addr     netip.AddrPort
	accepted atomic.Int64
}

func startSilent(t *testing.T) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentListener{addr: netip.MustParseAddrPort(ln.Addr().String())}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

func (m *mesh) endpointHealth(svc, id string, addr netip.AddrPort, h registry.Health) {
	m.t.Helper()
	if _, err := m.reg.Apply("c1", registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: svc},
		ID: id, Addresses: []string{addr.Addr().String()}, Port: uint32(addr.Port()),
		Locality: registry.Locality{Region: "r1", Zone: "z1"}, Health: h})); err != nil {
		m.t.Fatal(err)
	}
}

// TestNoHealthyUpstream: when every endpoint of a route's cluster is
// unhealthy (here: endpoints that would accept and never answer), the
// proxy answers 503 "no healthy upstream" at once — nothing is sent to
// them, the access log carries UH, the metric counts it — and serves
// again as soon as an endpoint is healthy. A cluster whose endpoints are
// all removed answers the same.
func TestNoHealthyUpstream(t *testing.T) {
	m := newMesh(t)
	m.service("web", 80, registry.ProtocolHTTP)
	silent, silent2 := startSilent(t), startSilent(t)
	good := startBackend(t, "good")
	m.endpointHealth("web", "dead-1", silent.addr, registry.Unhealthy)
	m.endpointHealth("web", "dead-2", silent2.addr, registry.Unhealthy)
	m.endpointHealth("web", "good", good.addr, registry.Unhealthy)
	up := freeAddr(t)
	logs := &lockedBuffer{}
	px := startProxy(t, m.xds.Addr, sidecar.Config{AccessLog: logs, Upstreams: []sidecar.Upstream{{Listen: up, Host: host("web"), Port: 80}}})
	// The client's timeout is far beyond the answer expected; a request
	// that reached the silent endpoints would hit it.
	c := &http.Client{Timeout: 30 * time.Second}
	url := "http://" + up.String() + "/x"

	for range 5 {
		code, body, _ := get(t, c, url)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no healthy upstream") {
			t.Fatalf("every endpoint unhealthy: %d %q, want 503 no healthy upstream", code, body)
		}
	}
	if n := silent.accepted.Load() + silent2.accepted.Load(); n != 0 {
		t.Fatalf("the unhealthy endpoints got %d connections", n)
	}
	if n := good.hits.Load(); n != 0 {
		t.Fatalf("the unhealthy backend got %d requests", n)
	}
	if n := px.metric(t, "meridian_proxy_upstream_no_healthy_total"); n < 5 {
		t.Fatalf("meridian_proxy_upstream_no_healthy_total = %v, want >= 5", n)
	}
	uh := 0
	for _, l := range logs.lines(t) {
		if l["response_flags"] == "UH" && l["response_code"] == float64(503) {
			uh++
		}
	}
	if uh < 5 {
		t.Fatalf("%d access-log lines with 503 UH, want 5: %v", uh, logs.lines(t))
	}
	if n := px.metric(t, "meridian_requests_total", "response_code", "503", "response_flags", "UH"); n < 5 {
		t.Fatalf("meridian_requests_total{503, UH} = %v, want >= 5", n)
	}

	// One endpoint healthy again (and the others gone, so that panic
	// mode, which uses every host while fewer than half are healthy, does
	// not send to the silent ones): served.
	key := func(id string) registry.EndpointKey {
		return registry.EndpointKey{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: id}
	}
	if _, err := m.reg.Apply("c1", registry.DeleteEndpoint(key("dead-1")), registry.DeleteEndpoint(key("dead-2"))); err != nil {
		t.Fatal(err)
	}
	m.endpointHealth("web", "good", good.addr, registry.Healthy)
	eventually2xx(t, c, url)

	// Every endpoint gone: the same 503.
	if _, err := m.reg.Apply("c1", registry.DeleteEndpoint(key("good"))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		code, body, _ := get(t, c, url)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "no healthy upstream") {
			return fmt.Errorf("no endpoints: %d %q", code, body)
		}
		return nil
	})
	if n := silent.accepted.Load() + silent2.accepted.Load(); n != 0 {
		t.Fatalf("the unhealthy endpoints got %d connections", n)
	}
}
