package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
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
	up := testutil.FreeAddr(t)
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

// link is a TCP path to a backend that can be cut like a network link:
// while cut, bytes in both directions are dropped and new connections
// are held unanswered. Connections that lived through a cut are dead
// once it heals, as the peer dropped them meanwhile: the first bytes sent
// on one are answered with a reset.
type link struct {
	addr   netip.AddrPort
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	epoch int // bumped by every cut and heal; a connection of an older one is dead
	conns map[net.Conn]struct{}

	accepted, resets atomic.Int64
	wg               sync.WaitGroup
}

func startLink(t *testing.T, target netip.AddrPort) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{addr: netip.MustParseAddrPort(ln.Addr().String()), target: target.String(), ln: ln, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(l.close)
	return l
}

func (l *link) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.accepted.Add(1)
		b, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		epoch := l.epoch
		l.conns[c], l.conns[b] = struct{}{}, struct{}{}
		l.mu.Unlock()
		l.wg.Add(2)
		go l.pump(c, b, epoch, true)
		go l.pump(b, c, epoch, false)
	}
}

// pump copies src to dst while the link is up and the connection alive.
func (l *link) pump(src, dst net.Conn, epoch int, fromProxy bool) {
	defer l.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			cut, dead := l.cut, l.epoch != epoch
			l.mu.Unlock()
			switch {
			case cut:
				continue // dropped on the wire
			case dead && fromProxy:
				l.resets.Add(1)
				src.(*net.TCPConn).SetLinger(0)
				src.Close()
				dst.Close()
				return
			case dead:
				continue
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (l *link) setCut(cut bool) {
	l.mu.Lock()
	l.cut = cut
	l.epoch++
	l.mu.Unlock()
}

func (l *link) close() {
	l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// TestStalePooledConnectionsAfterCut: a backend behind a link that is
// cut (blackholed) and healed. Requests during the cut fail; after it
// heals, the proxy's pooled connections are dead (the backend side reset
// them), and not one request fails — POSTs included, which net/http
// would not resend itself and the route has no retry policy for — because
// requests that meet a dead pooled connection are sent again on a fresh
// one.
//
// Over HTTP/1.1 (the proxy's own pool) and HTTP/2 (one multiplexed
// connection, net/http's transport).
func TestStalePooledConnectionsAfterCut(t *testing.T) {
	for _, proto := range []registry.Protocol{registry.ProtocolHTTP, registry.ProtocolHTTP2} {
		t.Run(string(proto), func(t *testing.T) { staleAfterCut(t, proto) })
	}
}

func staleAfterCut(t *testing.T, proto registry.Protocol) {
	m := newMesh(t)
	m.service("web", 80, proto)
	b := startBackend(t, "b")
	if proto == registry.ProtocolHTTP2 {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		// The same backend, served again on a listener that speaks h2c.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: b.srv.Handler, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		b.addr = netip.MustParseAddrPort(ln.Addr().String())
	}
	l := startLink(t, b.addr)
	m.endpoint("web", "b", l.addr, "z1", nil)
	up := testutil.FreeAddr(t)
	px := startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: up, Host: host("web"), Port: 80}}})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	url := "http://" + up.String() + "/pay"
	post := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader("amount=1"))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	}
	// burst sends workers × n POSTs at once and returns the failures.
	burst := func(workers, n int) []error {
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range n {
					if err := post(context.Background()); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		return errs
	}
	eventually2xx(t, c, url)
	if errs := burst(8, 20); len(errs) > 0 {
		t.Fatalf("before the cut: %d failures: %v", len(errs), errs[0])
	}
	pooled := l.accepted.Load()
	if proto == registry.ProtocolHTTP && pooled < 2 {
		t.Fatalf("the proxy opened %d connections to the backend, want a pool of several", pooled)
	}

	l.setCut(true)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		if err := post(ctx); err == nil {
			t.Fatal("a request went through the cut link")
		}
		cancel()
	}
	l.setCut(false)

	if errs := burst(8, 25); len(errs) > 0 {
		t.Fatalf("after the cut healed: %d of 200 requests failed, want 0: %v (resets %d accepted %d)", len(errs), errs[len(errs)-1], l.resets.Load(), l.accepted.Load())
	}
	if l.resets.Load() == 0 {
		t.Fatal("no request met a dead pooled connection: the test proves nothing")
	}
	// net/http's HTTP/2 transport resends what it had not sent on a
	// connection it found dead itself; HTTP/1.1 needs the proxy's resend.
	if n := px.metric(t, "meridian_proxy_upstream_stale_connections_total"); n == 0 && proto == registry.ProtocolHTTP {
		t.Fatal("meridian_proxy_upstream_stale_connections_total = 0 after dead pooled connections were met")
	}
	t.Logf("pooled connections before the cut %d, dead ones met after it %d, connections in all %d", pooled, l.resets.Load(), l.accepted.Load())
}
