package sidecar_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/internal/proposal"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/trust"
	trustauthz "github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/xds/translate"
)

var td = spiffeid.RequireTrustDomainFromString("mesh.test")

// authority is a test CA: a root and one cluster's intermediate, from
// package trust.
type authority struct {
	root *ca.Root
	auth *ca.Authority
}

func newAuthority(t *testing.T, td spiffeid.TrustDomain) *authority {
	t.Helper()
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "c1", PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "c1", Chain: []*x509.Certificate{ic}, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return &authority{root: root, auth: a}
}

func (a *authority) svid(t *testing.T, ns, sa string) *x509svid.SVID {
	t.Helper()
	id, err := trust.WorkloadID(a.root.TrustDomain(), ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.auth.Mint(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (a *authority) bundle() *spiffebundle.Bundle {
	return spiffebundle.FromX509Authorities(a.root.TrustDomain(), []*x509.Certificate{a.root.Certificate()})
}

// publish serves proposal.Resources for a proxy from a snapshot server.
func publish(t *testing.T, s *cptest.Snapshot, reg *registry.Registry, p translate.Proxy, o proposal.Options) map[resource.Type][]types.Resource {
	t.Helper()
	res, err := proposal.Resources(translate.Input{View: reg.View()}, p, o)
	if err != nil {
		t.Fatal(err)
	}
	s.Set(t, p.ID, res)
	return res
}

func nodeOf(p translate.Proxy) xdsclient.NodeConfig {
	return xdsclient.NodeConfig{ID: p.ID, Mode: string(p.Mode), Cluster: p.Cluster, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount, Locality: p.Locality.String()}
}

// meshTLS is two sidecars with mTLS between them: a client with an
// explicit upstream port to the echo service, and the echo workload's
// sidecar with an explicit inbound port in front of its application.
type meshTLS struct {
	ca         *authority
	reg        *registry.Registry
	cp         *cptest.Snapshot
	app        *backend
	up, inb    netip.AddrPort
	client     translate.Proxy
	server     translate.Proxy
	cpx, spx   *proxy
	serverSVID *x509svid.SVID
}

func newMeshTLS(t *testing.T, mode v1alpha1.MTLSMode, inboundFilters ...*hcm.HttpFilter) *meshTLS {
	t.Helper()
	m := &meshTLS{ca: newAuthority(t, td), reg: registry.New(registry.Options{}), cp: cptest.StartSnapshot(t, cptest.SnapshotOptions{})}
	if err := m.reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	m.app = startBackend(t, "echo-app")
	m.up, m.inb = freeAddr(t), freeAddr(t)
	if _, err := m.reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "echo"}, ID: "e1",
			Addresses: []string{m.inb.Addr().String()}, Port: uint32(m.inb.Port()), ServiceAccount: "echo",
			Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
	); err != nil {
		t.Fatal(err)
	}
	loc := registry.Locality{Region: "r1", Zone: "z1"}
	m.client = translate.Proxy{ID: "client", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "client", Locality: loc}
	appPort := uint32(m.app.addr.Port())
	m.server = translate.Proxy{ID: "echo", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "echo", Locality: loc, InboundPorts: []uint32{appPort}}
	bundles := []*spiffebundle.Bundle{m.ca.bundle()}
	publish(t, m.cp, m.reg, m.client, proposal.Options{MTLS: &proposal.MTLS{SVID: m.ca.svid(t, "shop", "client"), Bundles: bundles}})
	m.serverSVID = m.ca.svid(t, "shop", "echo")
	publish(t, m.cp, m.reg, m.server, proposal.Options{MTLS: &proposal.MTLS{SVID: m.serverSVID, Bundles: bundles, Mode: mode}, InboundHTTP: []uint32{appPort}, InboundFilters: inboundFilters})
	m.cpx = startProxy(t, m.cp.Addr, sidecar.Config{Node: nodeOf(m.client), Upstreams: []sidecar.Upstream{{Listen: m.up, Host: host("echo"), Port: 80}}})
	m.spx = startProxy(t, m.cp.Addr, sidecar.Config{Node: nodeOf(m.server), Inbound: []sidecar.InboundPort{{Listen: m.inb, AppPort: uint16(appPort)}}})
	return m
}

// TestMTLSBetweenSidecars: the client sidecar originates mTLS with its
// SVID from SDS, the server sidecar terminates it (STRICT), checks the peer
// by SPIFFE ID, and forwards to the application on loopback; the server's
// metrics name the client's workload.
func TestMTLSBetweenSidecars(t *testing.T) {
	m := newMeshTLS(t, v1alpha1.MTLSStrict)
	c := &http.Client{Timeout: 5 * time.Second}
	body := eventually2xx(t, c, "http://"+m.up.String()+"/secure")
	if !strings.HasPrefix(body, "echo-app GET /secure") {
		t.Fatalf("body = %q", body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := m.spx.metric(t, "meridian_requests_total", "reporter", "destination", "source_workload", "client", "response_code", "200"); v < 1 {
			return fmt.Errorf("server-side requests from the client workload = %v", v)
		}
		if v := m.cpx.metric(t, "meridian_requests_total", "reporter", "source", "destination_workload", "echo", "response_code", "200"); v < 1 {
			return fmt.Errorf("client-side requests to the echo workload = %v", v)
		}
		return nil
	})

	// STRICT: plaintext to the inbound port matches no chain.
	code, _, _ := get(t, &http.Client{Timeout: 2 * time.Second}, "http://"+m.inb.String()+"/plain")
	if code != 0 {
		t.Fatalf("plaintext under STRICT answered %d", code)
	}
	// A peer from another trust domain fails the handshake.
	other := newAuthority(t, spiffeid.RequireTrustDomainFromString("other.test"))
	osvid := other.svid(t, "shop", "intruder")
	cfg := mtls.ClientTLS(osvid, m.ca.bundle(), m.serverSVID.ID)
	if conn, err := tls.Dial("tcp", m.inb.String(), cfg); err == nil {
		// TLS 1.3 reports the server's refusal on the first read.
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client of another trust domain got an answer")
		}
		conn.Close()
	}
	// TLS garbage.
	garbage, err := net.Dial("tcp", m.inb.String())
	if err != nil {
		t.Fatal(err)
	}
	garbage.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff})
	garbage.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := garbage.Read(make([]byte, 1)); err == nil {
		t.Fatal("TLS garbage got an answer")
	}
	garbage.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, reason := range []string{"no_filter_chain", "tls_handshake", "tls_garbage"} {
			if v := m.spx.metric(t, "meridian_proxy_downstream_rejected_total", "reason", reason); v < 1 {
				return fmt.Errorf("rejections for %s = %v", reason, v)
			}
		}
		return nil
	})
	// And the proxy keeps serving.
	eventually2xx(t, c, "http://"+m.up.String()+"/after")
}

// TestAuthorizationPolicyEnforced: trust's AuthorizationPolicy, translated
// to Envoy RBAC by trust and served to the server sidecar, admits the
// client's GETs under /api and refuses the rest with 403, counted.
func TestAuthorizationPolicyEnforced(t *testing.T) {
	objs, err := v1alpha1.Load([]byte(`
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: shop}
spec:
  rules:
  - from:
    - principals: ["spiffe://mesh.test/ns/shop/sa/client"]
    to:
    - methods: [GET]
      paths: ["/api/*"]
`), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := trustauthz.Compile(objs, trustauthz.Workload{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	filters, _, err := trustauthz.HTTPFilters(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newMeshTLS(t, v1alpha1.MTLSStrict, filters...)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+m.up.String()+"/api/items")
	if code, body, _ := get(t, c, "http://"+m.up.String()+"/private"); code != http.StatusForbidden || !strings.Contains(body, "RBAC: access denied") {
		t.Fatalf("/private: %d %q, want 403 RBAC: access denied", code, body)
	}
	if v := m.spx.metric(t, "meridian_proxy_downstream_rejected_total", "reason", "rbac"); v < 1 {
		t.Fatalf("RBAC denials counted: %v", v)
	}
	if v := m.spx.metric(t, "meridian_requests_total", "reporter", "destination", "response_code", "403", "response_flags", "RBAC"); v < 1 {
		t.Fatalf("403s with flag RBAC: %v", v)
	}
}

func TestMTLSPermissive(t *testing.T) {
	m := newMeshTLS(t, v1alpha1.MTLSPermissive)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+m.up.String()+"/mtls")
	body := eventually2xx(t, c, "http://"+m.inb.String()+"/plain")
	if !strings.HasPrefix(body, "echo-app GET /plain") {
		t.Fatalf("plaintext under PERMISSIVE: %q", body)
	}
}

// TestSVIDRotation: a new SVID over SDS is served on the next handshake,
// without a restart, and traffic goes on.
func TestSVIDRotation(t *testing.T) {
	m := newMeshTLS(t, v1alpha1.MTLSStrict)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+m.up.String()+"/before")
	next := m.ca.svid(t, "shop", "echo")
	appPort := uint32(m.app.addr.Port())
	publish(t, m.cp, m.reg, m.server, proposal.Options{MTLS: &proposal.MTLS{SVID: next, Bundles: []*spiffebundle.Bundle{m.ca.bundle()}}, InboundHTTP: []uint32{appPort}})
	client := m.ca.svid(t, "shop", "client")
	testutil.Eventually(t, 10*time.Second, func() error {
		conn, err := tls.Dial("tcp", m.inb.String(), mtls.ClientTLS(client, m.ca.bundle(), next.ID))
		if err != nil {
			return err
		}
		defer conn.Close()
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber
		if got.Cmp(next.Certificates[0].SerialNumber) != 0 {
			return fmt.Errorf("server presents serial %v, want the rotated %v", got, next.Certificates[0].SerialNumber)
		}
		return nil
	})
	eventually2xx(t, c, "http://"+m.up.String()+"/after")
}
