package sidecar_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// TestExplicitUpstreamHTTP: a sidecar without traffic capture, fed by
// Meridian's xDS server over a registry, proxies an application's plain
// HTTP on an explicit upstream port to the service's endpoints, and
// follows endpoint changes.
func TestExplicitUpstreamHTTP(t *testing.T) {
	m := newMesh(t)
	m.service("echo", 80, registry.ProtocolHTTP)
	b1 := startBackend(t, "b1")
	m.endpoint("echo", "e1", b1.addr, "z1", nil)
	up := testutil.FreeAddr(t)
	startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: up, Host: host("echo"), Port: 80}}})
	c := &http.Client{Timeout: 5 * time.Second}
	body := eventually2xx(t, c, "http://"+up.String()+"/hello")
	if !strings.HasPrefix(body, "b1 GET /hello host="+host("echo")+":80") {
		t.Fatalf("body = %q", body)
	}

	b2 := startBackend(t, "b2")
	m.endpoint("echo", "e2", b2.addr, "z1", nil)
	testutil.Eventually(t, 10*time.Second, func() error {
		get(t, c, "http://"+up.String()+"/")
		if b2.hits.Load() == 0 {
			return fmt.Errorf("the new endpoint got no request")
		}
		return nil
	})
}

// TestHTTPProxyPort: absolute-form requests and CONNECT tunnels on the
// HTTP proxy port are routed like captured traffic.
func TestHTTPProxyPort(t *testing.T) {
	m := newMesh(t)
	m.service("echo", 80, registry.ProtocolHTTP)
	m.service("raw", 7000, registry.ProtocolTCP)
	b1 := startBackend(t, "b1")
	m.endpoint("echo", "e1", b1.addr, "z1", nil)
	tcpBackend := startBackend(t, "tcp")
	m.endpoint("raw", "r1", tcpBackend.addr, "z1", nil)
	proxyAddr := testutil.FreeAddr(t)
	startProxy(t, m.xds.Addr, sidecar.Config{HTTPProxy: proxyAddr})

	pu, _ := url.Parse("http://" + proxyAddr.String())
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	body := eventually2xx(t, c, "http://"+host("echo")+"/via-proxy")
	if !strings.HasPrefix(body, "b1 GET /via-proxy") {
		t.Fatalf("body = %q", body)
	}

	// CONNECT to a TCP service: the tunnel carries a plain HTTP exchange
	// to the raw service's endpoint. The tunnel is accepted before the
	// upstream is dialled (as a captured connection is), so until the raw
	// service's endpoints have arrived a tunnel may close at once.
	testutil.Eventually(t, 10*time.Second, func() error {
		conn, err := net.Dial("tcp", proxyAddr.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s:7000 HTTP/1.1\r\nHost: %s:7000\r\n\r\n", host("raw"), host("raw"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("CONNECT: %v %v", resp, err)
		}
		fmt.Fprintf(conn, "GET /tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp, err = http.ReadResponse(br, nil); err != nil {
			return fmt.Errorf("through the tunnel: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(b), "tcp GET /tunnel") {
			return fmt.Errorf("through the tunnel: %q", b)
		}
		return nil
	})
}

// TestExplicitUpstreamTCP: a plain TCP service through an explicit port.
func TestExplicitUpstreamTCP(t *testing.T) {
	m := newMesh(t)
	m.service("raw", 7000, registry.ProtocolTCP)
	b := startBackend(t, "tcp")
	m.endpoint("raw", "r1", b.addr, "z1", nil)
	up := testutil.FreeAddr(t)
	px := startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: up, Host: host("raw"), Port: 7000}}})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	body := eventually2xx(t, c, "http://"+up.String()+"/over-tcp")
	if !strings.HasPrefix(body, "tcp GET /over-tcp") {
		t.Fatalf("body = %q", body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := px.metric(t, "meridian_tcp_connections_closed_total", "reporter", "source"); v < 1 {
			return fmt.Errorf("tcp connections closed = %v", v)
		}
		if v := px.metric(t, "meridian_tcp_received_bytes_total"); v == 0 {
			return fmt.Errorf("no TCP bytes counted")
		}
		return nil
	})
}

// TestListenerNames: the names the proxy binds by are translate's.
func TestListenerNames(t *testing.T) {
	if sidecar.VirtualInboundListener != translate.VirtualInboundListener || sidecar.VirtualOutboundListener != translate.VirtualOutboundListener {
		t.Fatal("listener names differ from xds/translate's")
	}
}

// TestUpgradeStreamTrailers: through a sidecar, a protocol upgrade (as a
// WebSocket's) joins the client to the backend, an event stream reaches
// the client event by event, and trailers arrive as trailers.
func TestUpgradeStreamTrailers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upgrade":
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "no upgrade", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				brw.WriteString("echo " + line)
				brw.Flush()
			}
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-next // the second event waits until the client saw the first
			io.WriteString(w, "data: two\n\n")
		case "/trailers":
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "payload")
			w.Header().Set("X-Checksum", "abc")
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m := newMesh(t)
	m.service("stream", 80, registry.ProtocolHTTP)
	m.endpoint("stream", "e1", netip.MustParseAddrPort(ln.Addr().String()), "z1", nil)
	up := testutil.FreeAddr(t)
	startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: up, Host: host("stream"), Port: 80}}})
	c := &http.Client{Timeout: 5 * time.Second}

	// Trailers.
	testutil.Eventually(t, 10*time.Second, func() error {
		resp, err := c.Get("http://" + up.String() + "/trailers")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "payload" || resp.Trailer.Get("X-Checksum") != "abc" {
			return fmt.Errorf("%d %q, trailers %v", resp.StatusCode, b, resp.Trailer)
		}
		return nil
	})

	// An event stream, event by event.
	resp, err := c.Get("http://" + up.String() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(next)
	br.ReadString('\n')
	if line, _ := br.ReadString('\n'); line != "data: two\n" {
		t.Errorf("second event %q", line)
	}
	resp.Body.Close()

	// An upgrade.
	conn, err := net.Dial("tcp", up.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", host("stream"))
	cr := bufio.NewReader(conn)
	uresp, err := http.ReadResponse(cr, nil)
	if err != nil || uresp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", uresp, err)
	}
	for _, msg := range []string{"a\n", "b\n"} {
		io.WriteString(conn, msg)
		if line, err := cr.ReadString('\n'); line != "echo "+msg {
			t.Errorf("after the upgrade: %q, %v", line, err)
		}
	}
}

// TestAdminClusters: /clusters lists every cluster with its endpoints, as
// one JSON document written a cluster at a time.
func TestAdminClusters(t *testing.T) {
	m := newMesh(t)
	m.service("echo", 80, registry.ProtocolHTTP)
	m.service("other", 80, registry.ProtocolHTTP)
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	m.endpoint("echo", "e1", b1.addr, "z1", nil)
	m.endpoint("echo", "e2", b2.addr, "z2", nil)
	admin := testutil.FreeAddr(t)
	startProxy(t, m.xds.Addr, sidecar.Config{Admin: admin, Upstreams: []sidecar.Upstream{{Listen: testutil.FreeAddr(t), Host: host("echo"), Port: 80}}})
	type dump []struct {
		Name  string `json:"name"`
		Hosts []struct {
			Address  string `json:"address"`
			Locality string `json:"locality"`
		} `json:"hosts"`
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + admin.String() + "/clusters")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var d dump
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return fmt.Errorf("not JSON: %v", err)
		}
		if len(d) < 2 || !sort.SliceIsSorted(d, func(i, j int) bool { return d[i].Name < d[j].Name }) {
			return fmt.Errorf("clusters %+v: want both services' clusters, sorted", d)
		}
		for _, c := range d {
			if strings.Contains(c.Name, host("echo")) {
				var addrs []string
				for _, h := range c.Hosts {
					addrs = append(addrs, h.Address)
				}
				sort.Strings(addrs)
				want := []string{b1.addr.String(), b2.addr.String()}
				sort.Strings(want)
				if fmt.Sprint(addrs) != fmt.Sprint(want) {
					return fmt.Errorf("%s: hosts %v, want %v", c.Name, addrs, want)
				}
				return nil
			}
		}
		return fmt.Errorf("no cluster for %s in %+v", host("echo"), d)
	})
}
