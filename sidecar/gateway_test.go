package sidecar_test

//lint:file-ignore SA1019 the test speaks HTTP/2 to the gateway with x/net/http2's Transport, as the proxy does.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/xds/server"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// selfSigned returns a certificate and key (PEM) for names, and a pool
// that trusts it.
func selfSigned(t testing.TB, names ...string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}

// TestIngressGatewayTLS: an ingress gateway, configured by xds/server in
// ingress mode, terminates TLS with the given certificate (HTTP/1.1 and
// HTTP/2 by ALPN) and routes by Host into the mesh.
func TestIngressGatewayTLS(t *testing.T) {
	m := newMesh(t)
	m.service("echo", 80, registry.ProtocolHTTP)
	m.service("other", 80, registry.ProtocolHTTP)
	echo, other := startBackend(t, "echo"), startBackend(t, "other")
	m.endpoint("echo", "e1", echo.addr, "z1", nil)
	m.endpoint("other", "o1", other.addr, "z1", nil)
	certPEM, keyPEM, pool := selfSigned(t, "shop.example")
	gw := testutil.FreeAddr(t)
	name := translate.GatewayName(translate.ModeIngress, 8080)
	startProxy(t, m.xds.Addr, sidecar.Config{
		Node:        xdsclient.NodeConfig{ID: "ingress-1", Mode: xdsclient.ModeIngress, Cluster: "c1", Namespace: "shop", Locality: "r1/z1"},
		Rebind:      map[string]netip.AddrPort{name: gw},
		GatewayCert: certPEM, GatewayKey: keyPEM,
	})
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "shop.example"}
	h1 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http2.Transport{TLSClientConfig: tlsCfg}}
	url := "https://" + gw.String() + "/in"
	body := eventually2xx(t, h1, url, "Host", host("echo"))
	if !strings.HasPrefix(body, "echo GET /in") {
		t.Fatalf("echo: %q", body)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host("other") + ":80"
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("X-Backend") != "other" {
		t.Fatalf("over HTTP/2: proto %d, backend %q", resp.ProtoMajor, resp.Header.Get("X-Backend"))
	}
	if code, _, _ := get(t, h1, url, "Host", "unknown.example"); code != http.StatusNotFound {
		t.Fatalf("unknown host: %d, want 404", code)
	}
	// Plaintext to a TLS gateway is refused.
	if code, _, _ := get(t, &http.Client{Timeout: 2 * time.Second}, "http://"+gw.String()+"/", "Host", host("echo")); code == 200 {
		t.Fatal("plaintext reached the mesh through the TLS gateway")
	}
}

// registryOnlyMesh is a mesh service and an external HTTP host declared by
// a ServiceEntry (reached by DNS name: localhost), served by xds/server
// with the mesh's outbound traffic policy REGISTRY_ONLY.
type registryOnlyMesh struct {
	*mesh
	echo, external *backend
}

func newRegistryOnlyMesh(t *testing.T) *registryOnlyMesh {
	m := &registryOnlyMesh{mesh: &mesh{t: t, reg: registry.New(registry.Options{})}}
	if err := m.reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	m.xds = cptest.StartMeridian(t, m.reg, "c1", "", cptest.MeridianOption{Configure: func(c *server.Config) { c.RegistryOnly = true }})
	m.echo, m.external = startBackend(t, "echo"), startBackend(t, "external")
	m.service("echo", 80, registry.ProtocolHTTP)
	m.endpoint("echo", "e1", m.echo.addr, "z1", nil)
	m.policies(fmt.Sprintf(`
apiVersion: meridian.io/v1alpha1
kind: ServiceEntry
metadata: {name: external-api, namespace: shop}
spec:
  hosts: [api.external.test]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: %d}]
  resolution: dns
  endpoints: [{address: localhost}]
`, m.external.addr.Port()))
	return m
}

// TestRegistryOnlySidecar: with outboundTrafficPolicy REGISTRY_ONLY, a
// sidecar reaches mesh services and ServiceEntry hosts (resolved by DNS),
// and refuses, logs and counts everything else — HTTP through the proxy
// port and CONNECT tunnels alike.
func TestRegistryOnlySidecar(t *testing.T) {
	m := newRegistryOnlyMesh(t)
	pa := testutil.FreeAddr(t)
	px := startProxy(t, m.xds.Addr, sidecar.Config{HTTPProxy: pa})
	pu, _ := url.Parse("http://" + pa.String())
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	if body := eventually2xx(t, c, "http://"+host("echo")+"/"); !strings.HasPrefix(body, "echo") {
		t.Fatalf("mesh service: %q", body)
	}
	if body := eventually2xx(t, c, "http://api.external.test/v1"); !strings.HasPrefix(body, "external GET /v1") {
		t.Fatalf("ServiceEntry host: %q", body)
	}
	code, body, _ := get(t, c, "http://unknown.test/")
	if code != http.StatusBadGateway || !strings.Contains(body, "only allows registered hosts") {
		t.Fatalf("unregistered host: %d %q, want 502 refused", code, body)
	}
	// A tunnel to an unregistered destination is refused too.
	conn, err := net.Dial("tcp", pa.String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT 203.0.113.7:443 HTTP/1.1\r\nHost: 203.0.113.7:443\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, conn) // the proxy closes the tunnel
	conn.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := px.metric(t, "meridian_proxy_outbound_refused_total"); v < 2 {
			return fmt.Errorf("refusals counted: %v, want the HTTP request and the tunnel", v)
		}
		return nil
	})
}

// TestEgressGatewayRegistryOnly: an egress gateway routes ServiceEntry
// hosts and refuses every other host.
func TestEgressGatewayRegistryOnly(t *testing.T) {
	m := newRegistryOnlyMesh(t)
	gw := testutil.FreeAddr(t)
	px := startProxy(t, m.xds.Addr, sidecar.Config{Node: xdsclient.NodeConfig{ID: "egress", Mode: xdsclient.ModeEgress, Cluster: "c1", Namespace: "shop", ListenerPort: 8080},
		Rebind: map[string]netip.AddrPort{translate.GatewayName(translate.ModeEgress, 8080): gw}})
	c := &http.Client{Timeout: 5 * time.Second}
	if body := eventually2xx(t, c, "http://"+gw.String()+"/out", "Host", "api.external.test"); !strings.HasPrefix(body, "external GET /out") {
		t.Fatalf("ServiceEntry host: %q", body)
	}
	if code, _, _ := get(t, c, "http://"+gw.String()+"/", "Host", "evil.example"); code != http.StatusBadGateway {
		t.Fatalf("unregistered host: %d, want 502", code)
	}
	if v := px.metric(t, "meridian_proxy_outbound_refused_total"); v < 1 {
		t.Fatal("refusal not counted")
	}
}

// TestEastWestGateway: a client sidecar in cluster c2 (network n2) reaches
// the echo service, whose only endpoint runs in cluster c1 (network n1),
// through c1's east-west gateway. xds/translate sends the client the
// gateway's address for that endpoint; the client's mTLS session carries
// SNI outbound_.80_._.HOST, which the gateway routes to the endpoint
// without terminating it; the server sidecar terminates it and checks the
// client's SPIFFE ID. The gateway is published as an IP, then as a DNS
// name, which the client resolves.
func TestEastWestGateway(t *testing.T) {
	for _, hostname := range []bool{false, true} {
		t.Run(fmt.Sprintf("hostname=%v", hostname), func(t *testing.T) {
			gwAddr := testutil.FreeAddr(t)
			published := gwAddr.String()
			if hostname {
				published = fmt.Sprintf("localhost:%d", gwAddr.Port())
			}
			m := newSecureMesh(t, registry.Cluster{Name: "c1", Region: "r1", Network: "n1", Gateways: []string{published}},
				registry.Cluster{Name: "c2", Region: "r2", Network: "n2"})
			app := startBackend(t, "echo-app")
			inb, up := testutil.FreeAddr(t), testutil.FreeAddr(t)
			svc := &registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}
			for _, c := range []string{"c1", "c2"} {
				if _, err := m.reg.Apply(c, registry.PutService(svc)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := m.reg.Apply("c1", registry.PutEndpoint(&registry.Endpoint{Service: svc.Key(), ID: "e1", Addresses: []string{inb.Addr().String()},
				Port: uint32(inb.Port()), ServiceAccount: "echo", Locality: registry.Locality{Region: "r1", Zone: "z1"}})); err != nil {
				t.Fatal(err)
			}
			appPort := app.addr.Port()
			gwpx := startProxy(t, m.xds.Addr, m.as(sidecar.Config{
				Node:   xdsclient.NodeConfig{ID: "ew", Mode: xdsclient.ModeEastWest, Cluster: "c1", Namespace: "meridian-system", Locality: "r1/z1"},
				Rebind: map[string]netip.AddrPort{translate.GatewayName(translate.ModeEastWest, translate.DefaultEastWestPort): gwAddr},
			}, "meridian-system", "east-west", false))
			startProxy(t, m.xds.Addr, m.as(sidecar.Config{
				Node: xdsclient.NodeConfig{ID: "echo-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "echo",
					Locality: "r1/z1", InboundPorts: []string{fmt.Sprintf("%d/http", appPort)}},
				Inbound: []sidecar.InboundPort{{Listen: inb, AppPort: appPort}},
			}, "shop", "echo", false))
			startProxy(t, m.xds.Addr, m.as(sidecar.Config{
				Node:      xdsclient.NodeConfig{ID: "client-1", Mode: xdsclient.ModeSidecar, Cluster: "c2", Namespace: "shop", ServiceAccount: "client", Locality: "r2/z1"},
				Upstreams: []sidecar.Upstream{{Listen: up, Host: host("echo"), Port: 80}},
			}, "shop", "client", false))

			c := &http.Client{Timeout: 5 * time.Second}
			if body := eventually2xx(t, c, "http://"+up.String()+"/across"); !strings.HasPrefix(body, "echo-app GET /across") {
				t.Fatalf("across networks: %q", body)
			}
			// The gateway passed TLS through: it proxied TCP and
			// terminated nothing.
			if v := gwpx.metric(t, "meridian_tcp_connections_opened_total", "reporter", "gateway"); v < 1 {
				t.Fatalf("gateway TCP connections: %v", v)
			}
			if v := gwpx.metric(t, "meridian_requests_total"); v != 0 {
				t.Fatalf("the gateway saw %v HTTP requests: it must not terminate mTLS", v)
			}
		})
	}
}
