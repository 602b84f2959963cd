package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	up := freeAddr(t)
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
	proxyAddr := freeAddr(t)
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
	up := freeAddr(t)
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
