package mtls_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/svid"
)

var (
	td  = trusttest.TD
	web = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	db  = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/db")
)

func pa(ns, name string, sel map[string]string, mode v1alpha1.MTLSMode, ports map[string]v1alpha1.MTLSMode) *v1alpha1.PeerAuthentication {
	p := &v1alpha1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.PeerAuthenticationSpec{Mode: mode, PortLevelMTLS: ports}}
	if sel != nil {
		p.Spec.Selector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return p
}

func TestModeFor(t *testing.T) {
	webW := authz.Workload{Namespace: "shop", Labels: map[string]string{"app": "web"}}
	legacy := authz.Workload{Namespace: "legacy", Labels: map[string]string{"app": "old"}}
	objs := []v1alpha1.Object{
		pa("meridian-system", "mesh", nil, v1alpha1.MTLSStrict, nil),
		pa("legacy", "ns", nil, v1alpha1.MTLSPermissive, nil),
		pa("shop", "web", map[string]string{"app": "web"}, "", map[string]v1alpha1.MTLSMode{"9090": v1alpha1.MTLSPermissive}),
		pa("legacy", "b-old", map[string]string{"app": "old"}, v1alpha1.MTLSStrict, nil),
		pa("legacy", "a-old", map[string]string{"app": "old"}, v1alpha1.MTLSPermissive, nil),
	}
	for _, tc := range []struct {
		name string
		objs []v1alpha1.Object
		w    authz.Workload
		port uint32
		want v1alpha1.MTLSMode
	}{
		{"nothing: STRICT", nil, webW, 8080, v1alpha1.MTLSStrict},
		{"mesh-wide PERMISSIVE", []v1alpha1.Object{pa("meridian-system", "mesh", nil, v1alpha1.MTLSPermissive, nil)}, webW, 8080, v1alpha1.MTLSPermissive},
		{"namespace beats mesh", objs[:2], authz.Workload{Namespace: "legacy"}, 80, v1alpha1.MTLSPermissive},
		{"port level", objs, webW, 9090, v1alpha1.MTLSPermissive},
		{"workload policy without mode inherits", objs, webW, 8080, v1alpha1.MTLSStrict},
		{"first by name wins", objs, legacy, 80, v1alpha1.MTLSPermissive},
		{"other namespace's policy does not apply", objs[1:2], webW, 80, v1alpha1.MTLSStrict},
	} {
		if got := mtls.ModeFor(tc.objs, tc.w, tc.port); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

type server struct {
	l        *mtls.Listener
	reg      *prometheus.Registry
	admitted chan *mtls.Conn
}

func listen(t *testing.T, mode v1alpha1.MTLSMode, m *svid.Manager, b *bundle.Source) *server {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l := mtls.NewListener(inner, mtls.ListenerConfig{Mode: mode, TLS: mtls.ServerTLS(m.Source(web), b), Bundles: b, Logger: trusttest.Logger(), Registerer: reg})
	s := &server{l: l, reg: reg, admitted: make(chan *mtls.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.admitted <- c.(*mtls.Conn)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return s
}

// accept returns the next admitted connection.
func (s *server) accept(t *testing.T) *mtls.Conn {
	t.Helper()
	select {
	case c := <-s.admitted:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection admitted")
		return nil
	}
}

func (s *server) refused(t *testing.T, reason string) float64 {
	return trusttest.Count(t, s.reg, "meridian_trust_mtls_refused_total", "reason", reason)
}

func dialTLS(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	c.Close()
	if err == io.EOF {
		return nil
	}
	return err
}

func TestListener(t *testing.T) {
	c := trusttest.NewCA(t, td, "eks-euw1")
	b := bundle.NewSource(trusttest.Bundle(c.Root))
	m := svid.NewManager(svid.ManagerConfig{Minter: c.Authority})
	strict := listen(t, v1alpha1.MTLSStrict, m, b)
	addr := strict.l.Addr().String()

	// A mesh peer: admitted, with its SPIFFE ID and cluster.
	go dialTLS(addr, mtls.ClientTLS(m.Source(db), b, web))
	conn := strict.accept(t)
	if conn == nil || !conn.MTLS() || conn.Peer().ID != db || conn.Peer().Cluster != "eks-euw1" {
		t.Fatalf("mesh peer: %+v", conn)
	}
	conn.Close()

	refusedCase := func(name, reason string, dial func() error) {
		t.Helper()
		before := strict.refused(t, reason)
		dial()
		testutil.Eventually(t, 5*time.Second, func() error {
			if after := strict.refused(t, reason); after != before+1 {
				return fmt.Errorf("%s: refusal %q counted %v -> %v", name, reason, before, after)
			}
			return nil
		})
		if len(strict.admitted) > 0 {
			t.Fatalf("%s: admitted", name)
		}
	}
	refusedCase("plaintext under STRICT", "plaintext", func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			c.Close()
		}
		return err
	})
	refusedCase("TLS without a client certificate", "handshake", func() error {
		return dialTLS(addr, &tls.Config{InsecureSkipVerify: true})
	})
	other := trusttest.NewCA(t, td, "eks-euw1")
	om := svid.NewManager(svid.ManagerConfig{Minter: other.Authority})
	refusedCase("SVID of another root", "handshake", func() error {
		return dialTLS(addr, mtls.ClientTLS(om.Source(db), b, web))
	})
	foreign := trusttest.NewCA(t, spiffeid.RequireTrustDomainFromString("other.test"), "x")
	fm := svid.NewManager(svid.ManagerConfig{Minter: foreign.Authority})
	refusedCase("wrong trust domain", "handshake", func() error {
		return dialTLS(addr, mtls.ClientTLS(fm.Source(spiffeid.RequireFromString("spiffe://other.test/ns/a/sa/b")), bundle.NewSource(trusttest.Bundle(foreign.Root), trusttest.Bundle(c.Root)), web))
	})
	for name, at := range map[string]time.Time{"expired": time.Now().Add(-3 * time.Hour), "not yet valid": time.Now().Add(3 * time.Hour)} {
		stale := minted(t, c, at)
		refusedCase(name+" client certificate", "handshake", func() error {
			return dialTLS(addr, mtls.ClientTLS(stale, b, web))
		})
	}

	// The client checks the server by SPIFFE ID, not chain alone (and
	// aborts, which the server counts as a failed handshake).
	refusedCase("server with another ID", "handshake", func() error {
		err := dialTLS(addr, mtls.ClientTLS(m.Source(db), b, spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/payments")))
		if err == nil {
			t.Fatal("client accepted a server with another ID")
		}
		return err
	})

	// PERMISSIVE admits both.
	perm := listen(t, v1alpha1.MTLSPermissive, m, b)
	client, err := net.Dial("tcp", perm.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	plain := perm.accept(t)
	if plain == nil || plain.MTLS() || !plain.Peer().ID.IsZero() {
		t.Fatalf("plaintext under PERMISSIVE: %+v", plain)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(plain, buf); err != nil || string(buf) != "GET" {
		t.Fatalf("sniffed bytes lost: %q %v", buf, err)
	}
	go dialTLS(perm.l.Addr().String(), mtls.ClientTLS(m.Source(db), b, web))
	if c := perm.accept(t); c == nil || !c.MTLS() {
		t.Fatal("mTLS under PERMISSIVE")
	}
}

// minted is an SVID for db from an authority whose clock is at.
func minted(t *testing.T, c *trusttest.CA, at time.Time) *x509svid.SVID {
	key, _ := ca.GenerateKey("")
	ic, _ := c.Root.IssueIntermediate(ca.IntermediateRequest{Cluster: "eks-euw1", PublicKey: key.Public()})
	a, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "eks-euw1", Chain: []*x509.Certificate{ic}, Key: key, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Mint(db, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInboundChains(t *testing.T) {
	strict, err := mtls.InboundChains(v1alpha1.MTLSStrict, web)
	if err != nil || len(strict) != 1 || strict[0].Match.TransportProtocol != "tls" || strict[0].TransportSocket == nil {
		t.Fatalf("STRICT: %v %v", strict, err)
	}
	perm, _ := mtls.InboundChains(v1alpha1.MTLSPermissive, web)
	if len(perm) != 2 || perm[1].Match.TransportProtocol != "raw_buffer" || perm[1].TransportSocket != nil {
		t.Fatalf("PERMISSIVE: %v", perm)
	}
}
