package member_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/svid"
)

var td = trusttest.TD

type mesh struct {
	root    *ca.Root
	bundles *bundle.Source
	a, b    *ca.Authority
	bKey    any
}

func newMesh(t *testing.T) *mesh {
	c := trusttest.NewCA(t, td, "a")
	b, bKey := trusttest.NewAuthority(t, c.Root, "b", nil)
	return &mesh{root: c.Root, bundles: bundle.NewSource(trusttest.Bundle(c.Root)), a: c.Authority, b: b, bKey: bKey}
}

func memberSVID(t *testing.T, a *ca.Authority, cluster string) *x509svid.SVID {
	t.Helper()
	id, _ := member.ID(td, cluster)
	s, err := a.Mint(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	m := newMesh(t)
	got, err := member.Verify(memberSVID(t, m.a, "a").Certificates, m.bundles)
	if err != nil || got != "a" {
		t.Fatalf("verify a: %q %v", got, err)
	}

	// Cluster b's authority refuses to mint cluster a's identity...
	aID, _ := member.ID(td, "a")
	if _, err := m.b.Mint(aID, 0); err == nil {
		t.Fatal("cluster b minted cluster a's identity")
	}
	// ...and a stolen b intermediate forging it by hand is caught by Verify.
	key, _ := ca.GenerateKey("")
	bIC := m.b.Chain()[0]
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: bIC.SerialNumber, URIs: []*url.URL{aID.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}, bIC, key.Public(), m.bKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := x509.ParseCertificate(der)
	if _, err := member.Verify([]*x509.Certificate{forged, bIC}, m.bundles); err == nil || !strings.Contains(err.Error(), "own intermediate") {
		t.Fatalf("impostor accepted: %v", err)
	}

	workload, _ := m.a.Mint(spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b"), 0)
	if _, err := member.Verify(workload.Certificates, m.bundles); err == nil {
		t.Fatal("a workload passed as a member")
	}
	other := trusttest.NewCA(t, td, "a")
	if _, err := member.Verify(memberSVID(t, other.Authority, "a").Certificates, m.bundles); err == nil {
		t.Fatal("a member of another root accepted")
	}
}

type served struct {
	state tls.ConnectionState
	err   error
}

// handshake runs one real TLS handshake between a member server and client
// and returns what each side saw.
func handshake(t *testing.T, server, client *tls.Config) (srv served, cliState tls.ConnectionState, cliErr error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			srv.err = err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		srv.err = tc.Handshake()
		srv.state = tc.ConnectionState()
		io.Copy(io.Discard, tc)
	})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), client)
	if err == nil {
		cliState = conn.ConnectionState()
		conn.Close()
	}
	wg.Wait()
	return srv, cliState, err
}

func TestMemberTLS(t *testing.T) {
	m := newMesh(t)
	mgrA := svid.NewManager(svid.ManagerConfig{Minter: m.a})
	mgrB := svid.NewManager(svid.ManagerConfig{Minter: m.b})
	aID, _ := member.ID(td, "a")
	bID, _ := member.ID(td, "b")
	server := member.ServerTLS(mgrA.Source(aID), m.bundles, td)

	srv, cli, err := handshake(t, server, member.ClientTLS(mgrB.Source(bID), m.bundles, td, "a"))
	if err != nil || srv.err != nil {
		t.Fatalf("member handshake: client %v, server %v", err, srv.err)
	}
	if err := member.VerifyClaim("b", srv.state, m.bundles); err != nil {
		t.Fatalf("server checking the client's claim: %v", err)
	}
	if err := member.VerifyClaim("c", srv.state, m.bundles); err == nil || !strings.Contains(err.Error(), `claims cluster "c"`) {
		t.Fatalf("false claim: %v", err)
	}
	if err := member.VerifyClaim("a", cli, m.bundles); err != nil {
		t.Fatal(err)
	}

	// Dialing "b" reaches a: refused by the client.
	if _, _, err := handshake(t, server, member.ClientTLS(mgrB.Source(bID), m.bundles, td, "b")); err == nil {
		t.Fatal("client accepted the wrong cluster")
	}
	// A workload SVID is not a member: refused by the server.
	wl := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	srv, _, _ = handshake(t, server, member.ClientTLS(mgrB.Source(wl), m.bundles, td, ""))
	if srv.err == nil {
		t.Fatal("server accepted a workload as a member")
	}
	// A member of another mesh: refused.
	other := trusttest.NewCA(t, td, "b")
	mgrO := svid.NewManager(svid.ManagerConfig{Minter: other.Authority})
	srv, _, _ = handshake(t, server, member.ClientTLS(mgrO.Source(bID), bundle.NewSource(trusttest.Bundle(other.Root, m.root)), td, ""))
	if srv.err == nil {
		t.Fatal("server accepted a member of another root")
	}
}
