package bundleendpoint_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/bundleendpoint"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// mesh is one trust domain with a control plane serving its bundle
// endpoint (https_spiffe) and counting fetches.
type mesh struct {
	td      spiffeid.TrustDomain
	ca      *trusttest.CA
	svids   *svid.Manager
	bundles *bundle.Source
	url     string
	member  spiffeid.ID
	fetches atomic.Int64
}

func newMesh(t *testing.T, name string) *mesh {
	td := spiffeid.RequireTrustDomainFromString(name)
	c := trusttest.NewCA(t, td, "hub")
	b := trusttest.Bundle(c.Root)
	b.SetSequenceNumber(1)
	b.SetRefreshHint(50 * time.Millisecond) // foreign watchers refetch quickly in tests
	m := &mesh{td: td, ca: c, svids: svid.NewManager(svid.ManagerConfig{Minter: c.Authority}), bundles: bundle.NewSource(b)}
	m.member, _ = member.ID(td, "hub")
	h, err := bundleendpoint.Handler(td, m.bundles)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", bundleendpoint.SPIFFETLS(m.svids.Source(m.member)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.fetches.Add(1); h.ServeHTTP(w, r) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	m.url = "https://" + l.Addr().String()
	return m
}

func (m *mesh) own() *spiffebundle.Bundle { b, _ := m.bundles.Get(m.td); return b }

// federate has m watch other's endpoint until the test ends.
func (m *mesh) federate(t *testing.T, other *mesh, bootstrap *spiffebundle.Bundle) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := bundleendpoint.Watch(ctx, m.td, bundleendpoint.Foreign{
			TrustDomain: other.td, URL: other.url, Profile: bundleendpoint.HTTPSSPIFFE,
			EndpointID: other.member, Bootstrap: bootstrap,
		}, m.bundles, trusttest.Logger())
		if err != nil {
			t.Errorf("watch: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (m *mesh) waitFetches(t *testing.T, n int64) {
	target := m.fetches.Load() + n
	testutil.Eventually(t, 5*time.Second, func() error {
		if m.fetches.Load() < target {
			return errors.New("not fetched yet")
		}
		return nil
	})
}

// handshake: a workload of client's mesh dials a workload of server's mesh,
// each verifying the other with its own mesh's bundle source.
func handshake(server, client *mesh) error {
	web, _ := spiffeid.FromPath(server.td, "/ns/shop/sa/web")
	api, _ := spiffeid.FromPath(client.td, "/ns/partner/sa/api")
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(server.svids.Source(web), server.bundles, tlsconfig.AuthorizeID(api)))
	if err != nil {
		return err
	}
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if c, err := l.Accept(); err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Read(make([]byte, 1)) // completes the handshake, or fails it
			c.Close()
		}
	})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(client.svids.Source(api), client.bundles, tlsconfig.AuthorizeID(web)))
	if err != nil {
		return err
	}
	conn.Write([]byte("x")) // with TLS 1.3 the server's verdict on the client arrives with the first read
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	conn.Close()
	if err == io.EOF {
		return nil
	}
	return err
}

func TestFederationHTTPSSPIFFE(t *testing.T) {
	a, b := newMesh(t, "a.test"), newMesh(t, "b.test")
	if err := handshake(a, b); err == nil {
		t.Fatal("meshes that never federated trust each other")
	}
	a.federate(t, b, b.own())
	b.federate(t, a, a.own())
	testutil.Eventually(t, 5*time.Second, func() error { return handshake(a, b) })

	// a rotates its root: b follows through the endpoint.
	r2, _ := ca.NewRoot(ca.RootOptions{TrustDomain: a.td})
	next := bundle.Next(a.own(), []*x509.Certificate{r2.Certificate()}, nil)
	a.bundles.Set(next)
	testutil.Eventually(t, 5*time.Second, func() error {
		if got, _ := b.bundles.Get(a.td); !got.HasX509Authority(r2.Certificate()) {
			return fmt.Errorf("b holds %d roots of a", len(got.X509Authorities()))
		}
		return nil
	})

	// a serving an older bundle again does not roll b back.
	old := a.own()
	old.SetSequenceNumber(1)
	a.bundles.Set(old)
	a.waitFetches(t, 3)
	if got, _ := b.bundles.Get(a.td); !got.HasX509Authority(r2.Certificate()) {
		t.Fatal("rolled back to an older bundle")
	}
}

func TestFederationHTTPSWeb(t *testing.T) {
	a, b := newMesh(t, "a.test"), newMesh(t, "b.test")
	h, _ := bundleendpoint.Handler(a.td, a.bundles)
	web := httptest.NewTLSServer(h) // a Web PKI certificate, as a public endpoint would have
	defer web.Close()
	roots := x509.NewCertPool()
	roots.AddCert(web.Certificate())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		bundleendpoint.Watch(ctx, b.td, bundleendpoint.Foreign{TrustDomain: a.td, URL: web.URL, Profile: bundleendpoint.HTTPSWeb, WebRoots: roots}, b.bundles, trusttest.Logger())
	})
	defer func() { cancel(); wg.Wait() }()
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, ok := b.bundles.Get(a.td); !ok {
			return errors.New("no bundle of a yet")
		}
		return nil
	})
}

func TestForeignConfigRefused(t *testing.T) {
	a := newMesh(t, "a.test")
	other := spiffeid.RequireTrustDomainFromString("z.test")
	for name, f := range map[string]bundleendpoint.Foreign{
		"own trust domain":     {TrustDomain: a.td, URL: "https://x", Profile: bundleendpoint.HTTPSWeb},
		"no URL":               {TrustDomain: other, Profile: bundleendpoint.HTTPSWeb},
		"spiffe, no bootstrap": {TrustDomain: other, URL: "https://x", Profile: bundleendpoint.HTTPSSPIFFE, EndpointID: spiffeid.RequireFromString("spiffe://z.test/x")},
		"spiffe, foreign ID":   {TrustDomain: other, URL: "https://x", Profile: bundleendpoint.HTTPSSPIFFE, EndpointID: a.member, Bootstrap: spiffebundle.New(other)},
		"unknown profile":      {TrustDomain: other, URL: "https://x", Profile: "ftp"},
	} {
		if err := bundleendpoint.Watch(context.Background(), a.td, f, a.bundles, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
