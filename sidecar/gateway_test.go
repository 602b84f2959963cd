package sidecar_test

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

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"golang.org/x/net/http2"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/internal/proposal"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
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
	gw := freeAddr(t)
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

// registryOnlyMesh is a mesh service, an external HTTP host declared by a
// ServiceEntry (reached by DNS name: localhost), served with REGISTRY_ONLY
// from a snapshot server (proposal: translate does not read ServiceEntries
// or the outbound policy yet).
type registryOnlyMesh struct {
	reg      *registry.Registry
	cp       *cptest.Snapshot
	echo     *backend
	external *backend
	entries  []proposal.ServiceEntry
}

func newRegistryOnlyMesh(t *testing.T) *registryOnlyMesh {
	m := &registryOnlyMesh{reg: registry.New(registry.Options{}), cp: cptest.StartSnapshot(t, cptest.SnapshotOptions{})}
	if err := m.reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	m.echo, m.external = startBackend(t, "echo"), startBackend(t, "external")
	if _, err := m.reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "echo"}, ID: "e1",
			Addresses: []string{"127.0.0.1"}, Port: uint32(m.echo.addr.Port()), Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
	); err != nil {
		t.Fatal(err)
	}
	m.entries = []proposal.ServiceEntry{{Host: "api.external.test", Port: 80, Endpoint: "localhost", EndpointPort: uint32(m.external.addr.Port())}}
	return m
}

func (m *registryOnlyMesh) publish(t *testing.T, p translate.Proxy) {
	res, err := proposal.Resources(translate.Input{View: m.reg.View()}, p, proposal.Options{RegistryOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	proposal.AddServiceEntries(res, p, m.entries, true)
	m.cp.Set(t, p.ID, res)
}

// TestRegistryOnlySidecar: with outboundTrafficPolicy REGISTRY_ONLY, a
// sidecar reaches mesh services and ServiceEntry hosts (resolved by DNS),
// and refuses, logs and counts everything else — HTTP through the proxy
// port and CONNECT tunnels alike.
func TestRegistryOnlySidecar(t *testing.T) {
	m := newRegistryOnlyMesh(t)
	p := translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", Locality: registry.Locality{Region: "r1", Zone: "z1"}}
	m.publish(t, p)
	pa := freeAddr(t)
	px := startProxy(t, m.cp.Addr, sidecar.Config{Node: nodeOf(p), HTTPProxy: pa})
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
	p := translate.Proxy{ID: "egress", Mode: translate.ModeEgress, Cluster: "c1", Namespace: "shop", ListenerPort: 8080, Locality: registry.Locality{Region: "r1", Zone: "z1"}}
	m.publish(t, p)
	gw := freeAddr(t)
	px := startProxy(t, m.cp.Addr, sidecar.Config{Node: xdsclient.NodeConfig{ID: "egress", Mode: xdsclient.ModeEgress, Cluster: "c1", Namespace: "shop", ListenerPort: 8080},
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
// through c1's east-west gateway. The control plane sends the client the
// gateway's address for that endpoint (translate's multi-network rule);
// the client's mTLS session carries SNI outbound_.80_._.HOST, which the
// gateway routes to the endpoint without terminating it; the server
// sidecar terminates it and checks the client's SPIFFE ID. With the
// gateway published as a DNS name, the client resolves it.
func TestEastWestGateway(t *testing.T) {
	for _, hostname := range []bool{false, true} {
		t.Run(fmt.Sprintf("hostname=%v", hostname), func(t *testing.T) {
			ca := newAuthority(t, td)
			reg := registry.New(registry.Options{})
			cp := cptest.StartSnapshot(t, cptest.SnapshotOptions{})
			gwAddr, inb, up := freeAddr(t), freeAddr(t), freeAddr(t)
			for _, c := range []registry.Cluster{
				{Name: "c1", Region: "r1", Network: "n1", Gateways: []string{gwAddr.String()}},
				{Name: "c2", Region: "r2", Network: "n2"},
			} {
				if err := reg.SetCluster(c); err != nil {
					t.Fatal(err)
				}
			}
			app := startBackend(t, "echo-app")
			svc := &registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}
			for _, c := range []string{"c1", "c2"} {
				if _, err := reg.Apply(c, registry.PutService(svc)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := reg.Apply("c1", registry.PutEndpoint(&registry.Endpoint{Service: svc.Key(), ID: "e1", Addresses: []string{inb.Addr().String()},
				Port: uint32(inb.Port()), ServiceAccount: "echo", Locality: registry.Locality{Region: "r1", Zone: "z1"}})); err != nil {
				t.Fatal(err)
			}
			bundles := []*spiffebundle.Bundle{ca.bundle()}
			appPort := uint32(app.addr.Port())
			client := translate.Proxy{ID: "client", Mode: translate.ModeSidecar, Cluster: "c2", Namespace: "shop", ServiceAccount: "client", Locality: registry.Locality{Region: "r2", Zone: "z1"}}
			server := translate.Proxy{ID: "echo", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "echo", Locality: registry.Locality{Region: "r1", Zone: "z1"}, InboundPorts: []uint32{appPort}}
			gw := translate.Proxy{ID: "ew", Mode: translate.ModeEastWest, Cluster: "c1", Namespace: "shop", ListenerPort: translate.DefaultEastWestPort, Locality: registry.Locality{Region: "r1", Zone: "z1"}}
			res := publish(t, cp, reg, client, proposal.Options{MTLS: &proposal.MTLS{SVID: ca.svid(t, "shop", "client"), Bundles: bundles}})
			if hostname {
				proposal.HostnameGateways(res, map[string]string{gwAddr.String(): "localhost"})
				cp.Set(t, client.ID, res)
			}
			publish(t, cp, reg, server, proposal.Options{MTLS: &proposal.MTLS{SVID: ca.svid(t, "shop", "echo"), Bundles: bundles}, InboundHTTP: []uint32{appPort}})
			publish(t, cp, reg, gw, proposal.Options{})
			gwpx := startProxy(t, cp.Addr, sidecar.Config{Node: nodeOf(gw), Rebind: map[string]netip.AddrPort{translate.GatewayName(translate.ModeEastWest, translate.DefaultEastWestPort): gwAddr}})
			startProxy(t, cp.Addr, sidecar.Config{Node: nodeOf(server), Inbound: []sidecar.InboundPort{{Listen: inb, AppPort: uint16(appPort)}}})
			startProxy(t, cp.Addr, sidecar.Config{Node: nodeOf(client), Upstreams: []sidecar.Upstream{{Listen: up, Host: host("echo"), Port: 80}}})

			c := &http.Client{Timeout: 5 * time.Second}
			if body := eventually2xx(t, c, "http://"+up.String()+"/across"); !strings.HasPrefix(body, "echo-app GET /across") {
				t.Fatalf("across networks: %q", body)
			}
			// The gateway passed TLS through: it saw SNI, proxied TCP, and
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
