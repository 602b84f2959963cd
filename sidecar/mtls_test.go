package sidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/xds/server"
)

var td = spiffeid.RequireTrustDomainFromString("mesh.test")

// authority is a test CA: a root and one cluster's intermediate, from
// package trust.
type authority struct {
	root *ca.Root
	auth *ca.Authority
}

func newAuthority(t testing.TB, td spiffeid.TrustDomain) *authority {
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

func (a *authority) svid(t testing.TB, ns, sa string) *x509svid.SVID {
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

// secureMesh is Meridian's whole security path from its own parts:
// xds/server over TLS with trust's SVID manager and bundle behind SDS, and
// sidecars attested by a token (as a Kubernetes service-account token is
// sent: cptest.TokenAttestor maps the token to the workload where meridiand
// would ask the API server) or by the SVID they present.
type secureMesh struct {
	*mesh
	ca      *authority
	bundles *bundle.Source
	svids   *svid.Manager
	own     *x509svid.SVID // meridiand's
}

func newSecureMesh(t *testing.T, clusters ...registry.Cluster) *secureMesh {
	t.Helper()
	m := &secureMesh{mesh: &mesh{t: t, reg: registry.New(registry.Options{})}, ca: newAuthority(t, td)}
	if len(clusters) == 0 {
		clusters = []registry.Cluster{{Name: "c1", Region: "r1"}}
	}
	for _, c := range clusters {
		if err := m.reg.SetCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	m.bundles = bundle.NewSource(m.ca.bundle())
	m.svids = svid.NewManager(svid.ManagerConfig{Minter: m.ca.auth})
	m.own = m.ca.svid(t, "meridian-system", "meridiand")
	serverTLS := tlsconfig.TLSServerConfig(m.own)
	serverTLS.ClientAuth = tls.RequestClientCert
	m.xds = cptest.StartMeridian(t, m.reg, clusters[0].Name, "", cptest.MeridianOption{
		Configure: func(c *server.Config) {
			c.Secrets = sds.NewProvider(m.svids, m.bundles)
			c.Attestor = server.Attestors(cptest.TokenAttestor(td), server.PeerSVID(m.bundles))
		},
		GRPC: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))},
	})
	return m
}

// as connects a proxy to the control plane over TLS, attested by a token
// for namespace/serviceAccount (or by its SVID, with bySVID).
func (m *secureMesh) as(cfg sidecar.Config, ns, sa string, bySVID bool) sidecar.Config {
	m.t.Helper()
	tlsCfg := tlsconfig.TLSClientConfig(m.bundles, tlsconfig.AuthorizeID(m.own.ID))
	if bySVID {
		tlsCfg = tlsconfig.MTLSClientConfig(m.ca.svid(m.t, ns, sa), m.bundles, tlsconfig.AuthorizeID(m.own.ID))
	} else {
		cfg.XDSTokenFile = filepath.Join(m.t.TempDir(), "token")
		if err := os.WriteFile(cfg.XDSTokenFile, []byte(cptest.Token(ns, sa)+"\n"), 0o600); err != nil {
			m.t.Fatal(err)
		}
	}
	cfg.XDSDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))}
	return cfg
}

// pair is a client sidecar with an explicit upstream port to the echo
// service, and the echo workload's sidecar with an explicit inbound port
// in front of its application (an HTTP port).
type pair struct {
	up, inb  netip.AddrPort
	app      *backend
	cpx, spx *proxy
}

func (m *secureMesh) pair(bySVID bool) *pair {
	t := m.t.(*testing.T)
	p := &pair{app: startBackend(t, "echo-app"), up: testutil.FreeAddr(t), inb: testutil.FreeAddr(t)}
	m.service("echo", 80, registry.ProtocolHTTP)
	if _, err := m.reg.Apply("c1", registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "echo"}, ID: "e1",
		Addresses: []string{p.inb.Addr().String()}, Port: uint32(p.inb.Port()), ServiceAccount: "echo",
		Locality: registry.Locality{Region: "r1", Zone: "z1"}})); err != nil {
		t.Fatal(err)
	}
	appPort := p.app.addr.Port()
	p.spx = startProxy(t, m.xds.Addr, m.as(sidecar.Config{
		Node: xdsclient.NodeConfig{ID: "echo-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "echo",
			Locality: "r1/z1", InboundPorts: []string{fmt.Sprintf("%d/http", appPort)}, Labels: map[string]string{"app": "echo"}},
		Inbound: []sidecar.InboundPort{{Listen: p.inb, AppPort: appPort}},
	}, "shop", "echo", bySVID))
	p.cpx = startProxy(t, m.xds.Addr, m.as(sidecar.Config{
		Node:      xdsclient.NodeConfig{ID: "client-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "client", Locality: "r1/z1"},
		Upstreams: []sidecar.Upstream{{Listen: p.up, Host: host("echo"), Port: 80}},
	}, "shop", "client", bySVID))
	return p
}

// TestMTLSBetweenSidecars: through xds/server, xds/translate and
// trust/sds, the client sidecar originates mTLS with the SVID it got over
// SDS, the server sidecar terminates it (STRICT by default), checks the
// peer by SPIFFE ID and forwards to the application on loopback; the
// server's metrics name the client's workload. Plaintext, a peer of
// another trust domain and TLS garbage are refused and counted, and the
// proxy keeps serving. Both attestations are exercised.
func TestMTLSBetweenSidecars(t *testing.T) {
	for _, bySVID := range []bool{false, true} {
		t.Run(fmt.Sprintf("attested by SVID=%v", bySVID), func(t *testing.T) {
			m := newSecureMesh(t)
			p := m.pair(bySVID)
			c := &http.Client{Timeout: 5 * time.Second}
			if body := eventually2xx(t, c, "http://"+p.up.String()+"/secure"); !strings.HasPrefix(body, "echo-app GET /secure") {
				t.Fatalf("body = %q", body)
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				if v := p.spx.metric(t, "meridian_requests_total", "reporter", "destination", "source_workload", "client", "response_code", "200"); v < 1 {
					return fmt.Errorf("server-side requests from the client workload = %v", v)
				}
				if v := p.cpx.metric(t, "meridian_requests_total", "reporter", "source", "destination_workload", "echo", "response_code", "200"); v < 1 {
					return fmt.Errorf("client-side requests to the echo workload = %v", v)
				}
				return nil
			})
			if bySVID {
				return
			}
			if code, _, _ := get(t, &http.Client{Timeout: 2 * time.Second}, "http://"+p.inb.String()+"/plain"); code != 0 {
				t.Fatalf("plaintext under STRICT answered %d", code)
			}
			other := newAuthority(t, spiffeid.RequireTrustDomainFromString("other.test"))
			cfg := tlsconfig.MTLSClientConfig(other.svid(t, "shop", "intruder"), m.ca.bundle(), tlsconfig.AuthorizeAny())
			if conn, err := tls.Dial("tcp", p.inb.String(), cfg); err == nil {
				// TLS 1.3 reports the server's refusal on the first read.
				conn.SetDeadline(time.Now().Add(2 * time.Second))
				fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				if _, err := conn.Read(make([]byte, 1)); err == nil {
					t.Fatal("a client of another trust domain got an answer")
				}
				conn.Close()
			}
			garbage, err := net.Dial("tcp", p.inb.String())
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
					if v := p.spx.metric(t, "meridian_proxy_downstream_rejected_total", "reason", reason); v < 1 {
						return fmt.Errorf("rejections for %s = %v", reason, v)
					}
				}
				return nil
			})
			eventually2xx(t, c, "http://"+p.up.String()+"/after")
		})
	}
}

// TestMTLSPermissive: a PeerAuthentication makes the echo workload
// PERMISSIVE: plaintext is served beside mTLS.
func TestMTLSPermissive(t *testing.T) {
	m := newSecureMesh(t)
	m.policies(`
apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: echo, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  mode: PERMISSIVE
`)
	p := m.pair(false)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+p.up.String()+"/mtls")
	if body := eventually2xx(t, c, "http://"+p.inb.String()+"/plain"); !strings.HasPrefix(body, "echo-app GET /plain") {
		t.Fatalf("plaintext under PERMISSIVE: %q", body)
	}
}

// TestAuthorizationPolicyEnforced: an AuthorizationPolicy, translated to
// Envoy RBAC by trust through xds/translate, admits the client's GETs
// under /api and refuses the rest with 403, counted.
func TestAuthorizationPolicyEnforced(t *testing.T) {
	m := newSecureMesh(t)
	m.policies(`
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from:
    - principals: ["spiffe://mesh.test/ns/shop/sa/client"]
    to:
    - methods: [GET]
      paths: ["/api/*"]
`)
	p := m.pair(false)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+p.up.String()+"/api/items")
	if code, body, _ := get(t, c, "http://"+p.up.String()+"/private"); code != http.StatusForbidden || !strings.Contains(body, "RBAC: access denied") {
		t.Fatalf("/private: %d %q, want 403 RBAC: access denied", code, body)
	}
	if v := p.spx.metric(t, "meridian_proxy_downstream_rejected_total", "reason", "rbac"); v < 1 {
		t.Fatalf("RBAC denials counted: %v", v)
	}
	if v := p.spx.metric(t, "meridian_requests_total", "reporter", "destination", "response_code", "403", "response_flags", "RBAC"); v < 1 {
		t.Fatalf("403s with flag RBAC: %v", v)
	}
}

// TestSVIDRotation: trust rotates every SVID (as after a root rotation);
// SDS delivers the new ones and the next handshake presents them, with
// no restart, while traffic goes on.
func TestSVIDRotation(t *testing.T) {
	m := newSecureMesh(t)
	p := m.pair(false)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	eventually2xx(t, c, "http://"+p.up.String()+"/before")
	echoID := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/echo")
	current, err := m.svids.Get(echoID)
	if err != nil {
		t.Fatal(err)
	}
	before := current.Certificates[0].SerialNumber
	if err := m.svids.RotateAll(); err != nil {
		t.Fatal(err)
	}
	next, err := m.svids.Get(echoID)
	if err != nil {
		t.Fatal(err)
	}
	if next.Certificates[0].SerialNumber.Cmp(before) == 0 {
		t.Fatal("RotateAll kept the SVID")
	}
	client := m.ca.svid(t, "shop", "client")
	testutil.Eventually(t, 10*time.Second, func() error {
		conn, err := tls.Dial("tcp", p.inb.String(), tlsconfig.MTLSClientConfig(client, m.bundles, tlsconfig.AuthorizeID(echoID)))
		if err != nil {
			return err
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next.Certificates[0].SerialNumber) != 0 {
			return fmt.Errorf("the server presents serial %v, want the rotated %v", got, next.Certificates[0].SerialNumber)
		}
		return nil
	})
	for range 20 {
		if code, body, _ := get(t, c, "http://"+p.up.String()+"/after"); code != 200 {
			t.Fatalf("after the rotation: %d %q", code, body)
		}
	}
}

// TestRequestAuthenticationEnforced: a RequestAuthentication and an
// AuthorizationPolicy on requestPrincipals, translated by xds/server into
// jwt_authn and RBAC, are enforced by the server sidecar behind mTLS: no
// token is denied by RBAC (403), a token with a bad signature or from an
// unknown issuer is refused (401 Jwt verification fails), and a valid
// token from alice reaches the application while bob's is denied.
func TestRequestAuthenticationEnforced(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	m := newSecureMesh(t)
	m.policies(fmt.Sprintf(`
apiVersion: meridian.io/v1alpha1
kind: RequestAuthentication
metadata: {name: users, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  jwtRules:
  - issuer: https://id.test
    jwks: '%s'
---
apiVersion: meridian.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from:
    - requestPrincipals: ["https://id.test/alice"]
`, jwks))
	p := m.pair(false)
	token := func(signer *ecdsa.PrivateKey, issuer, subject string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: signer, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := josejwt.Signed(s).Claims(josejwt.Claims{Issuer: issuer, Subject: subject, Expiry: josejwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	c := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + p.up.String() + "/items"
	alice := token(key, "https://id.test", "alice")
	eventually2xx(t, c, url, "Authorization", alice)
	for _, tc := range []struct {
		name, auth string
		code       int
		body       string
	}{
		{"no token", "", http.StatusForbidden, "RBAC: access denied"},
		{"bob", token(key, "https://id.test", "bob"), http.StatusForbidden, "RBAC: access denied"},
		{"bad signature", token(other, "https://id.test", "alice"), http.StatusUnauthorized, "Jwt verification fails"},
		{"unknown issuer", token(key, "https://elsewhere.test", "alice"), http.StatusUnauthorized, "Jwt verification fails"},
		{"malformed", "Bearer not.a.jwt", http.StatusUnauthorized, "Jwt verification fails"},
		{"alice", alice, http.StatusOK, "echo-app"},
	} {
		var hdr []string
		if tc.auth != "" {
			hdr = []string{"Authorization", tc.auth}
		}
		if code, body, _ := get(t, c, url, hdr...); code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, code, body, tc.code, tc.body)
		}
	}
}

// TestRequestMetrics: both sidecars of a pair report each request with
// Istio's standard labels — source and destination workload, namespace,
// cluster and locality, response code — and record its duration and
// request size.
func TestRequestMetrics(t *testing.T) {
	m := newSecureMesh(t)
	p := m.pair(false)
	c := &http.Client{Timeout: 5 * time.Second}
	eventually2xx(t, c, "http://"+p.up.String()+"/warm")
	for range 3 {
		r, err := c.Post("http://"+p.up.String()+"/post", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	labels := []string{"source_workload", "client", "source_namespace", "shop", "source_cluster", "c1",
		"destination_workload", "echo", "destination_namespace", "shop", "destination_cluster", "c1", "destination_locality", "r1/z1", "response_code", "200"}
	for _, side := range []struct {
		reporter string
		px       *proxy
	}{{"source", p.cpx}, {"destination", p.spx}} {
		l := append([]string{"reporter", side.reporter}, labels...)
		testutil.Eventually(t, 5*time.Second, func() error {
			for _, name := range []string{"meridian_requests_total", "meridian_request_duration_seconds", "meridian_request_bytes"} {
				if v := side.px.metric(t, name, l...); v < 4 {
					return fmt.Errorf("%s reported by %s with %v: %v, want at least 4", name, side.reporter, labels, v)
				}
			}
			return nil
		})
		got := 0.0
		for _, m := range side.px.series(t, "meridian_request_bytes", "reporter", side.reporter) {
			got += m.GetHistogram().GetSampleSum()
		}
		if got != 15 {
			t.Errorf("request bytes reported by %s: %v, want 15 (three bodies of 5)", side.reporter, got)
		}
	}
}
