package svid_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// cluster is one cluster's trust state: its authority, the SVIDs it hands
// out and the bundle it verifies peers with.
type cluster struct {
	name    string
	key     crypto.Signer
	auth    *ca.Authority
	svids   *svid.Manager
	bundles *bundle.Source
}

func newCluster(t *testing.T, root *ca.Root, name string, b *spiffebundle.Bundle) *cluster {
	a, key := trusttest.NewAuthority(t, root, name, nil)
	return &cluster{name: name, key: key, auth: a, svids: svid.NewManager(svid.ManagerConfig{Minter: a, Logger: trusttest.Logger()}), bundles: bundle.NewSource(b)}
}

// receive applies a bundle update as federation would.
func (c *cluster) receive(t *testing.T, update []byte) {
	t.Helper()
	cur, _ := c.bundles.Get(td)
	next, changed, err := bundle.Merge(cur, update)
	if err != nil || !changed {
		t.Fatalf("%s: merge: changed=%v %v", c.name, changed, err)
	}
	c.bundles.Set(next)
}

// resign gives the cluster its intermediate re-signed by root (same key) and
// reissues its SVIDs.
func (c *cluster) resign(t *testing.T, root *ca.Root) {
	t.Helper()
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: c.name, PublicKey: c.key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.auth.SetChain([]*x509.Certificate{ic}, c.key); err != nil {
		t.Fatal(err)
	}
	if err := c.svids.RotateAll(); err != nil {
		t.Fatal(err)
	}
}

// traffic runs continuous mTLS handshakes and one-byte exchanges from a
// client to a server, each with certificates and bundles from their
// cluster's sources, and counts them.
type traffic struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
}

func (tr *traffic) waitMore(t *testing.T, n int64) {
	t.Helper()
	target := tr.ok.Load() + n
	testutil.Eventually(t, 10*time.Second, func() error {
		if tr.ok.Load() < target {
			return fmt.Errorf("%d requests, waiting for %d", tr.ok.Load(), target)
		}
		return nil
	})
}

func serve(t *testing.T, server *cluster) net.Listener {
	cfg := tlsconfig.MTLSServerConfig(server.svids.Source(web), server.bundles, tlsconfig.AuthorizeMemberOf(td))
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				var b [1]byte
				if _, err := io.ReadFull(conn, b[:]); err == nil {
					conn.Write(b[:])
				}
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l
}

func (tr *traffic) run(ctx context.Context, addr string, client *cluster, workers int) *sync.WaitGroup {
	cfg := tlsconfig.MTLSClientConfig(client.svids.Source(db), client.bundles, tlsconfig.AuthorizeID(web))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := roundTrip(addr, cfg); err != nil {
					tr.failed.Add(1)
					tr.lastErr.Store(err)
				} else {
					tr.ok.Add(1)
				}
			}
		})
	}
	return &wg
}

func roundTrip(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return err
	}
	return nil
}

// TestRootRotationUnderTraffic rotates the mesh root while a client in
// cluster B handshakes continuously with a server in cluster A, each update
// reaching the two clusters at different times as gossip would deliver it:
//
//  1. prepare: the bundle gains the new root (signed by the old), A then B;
//  2. each cluster's intermediate is re-signed under the new root and its
//     SVIDs reissued, A then B;
//  3. retire: the bundle drops the old root (signed by the new), A then B.
//
// Not one request may fail. A client still holding only the old root
// afterwards does fail, which shows the counter would have seen failures.
func TestRootRotationUnderTraffic(t *testing.T) {
	r1, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	b1 := trusttest.Bundle(r1)
	b1.SetSequenceNumber(1)
	a, b := newCluster(t, r1, "a", b1), newCluster(t, r1, "b", b1)
	l := serve(t, a)

	ctx, stop := context.WithCancel(context.Background())
	var tr traffic
	wg := tr.run(ctx, l.Addr().String(), b, 4)
	tr.waitMore(t, 50)

	r2, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	prepare, err := bundle.Sign(bundle.Next(b1, []*x509.Certificate{r2.Certificate()}, nil), r1.Certificate(), r1.Signer())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*cluster{a, b} {
		c.receive(t, prepare)
		tr.waitMore(t, 50)
	}
	for _, c := range []*cluster{a, b} {
		c.resign(t, r2)
		tr.waitMore(t, 50)
	}
	b2, _ := a.bundles.Get(td)
	retire, err := bundle.Sign(bundle.Next(b2, nil, []*x509.Certificate{r1.Certificate()}), r2.Certificate(), r2.Signer())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*cluster{a, b} {
		c.receive(t, retire)
		tr.waitMore(t, 50)
	}
	stop()
	wg.Wait()

	if n := tr.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; last: %v", n, n+tr.ok.Load(), tr.lastErr.Load())
	}
	t.Logf("root rotated under %d mTLS requests, 0 failed", tr.ok.Load())
	for _, c := range []*cluster{a, b} {
		s, _ := c.svids.Get(web)
		if _, _, err := x509svid.Verify(s.Certificates, bundle.NewSource(trusttest.Bundle(r2))); err != nil {
			t.Fatalf("%s: SVID does not chain to the new root alone: %v", c.name, err)
		}
	}

	// The control: a client that never got the new root fails.
	stale := newCluster(t, r1, "b", b1)
	if err := roundTrip(l.Addr().String(), tlsconfig.MTLSClientConfig(stale.svids.Source(db), stale.bundles, tlsconfig.AuthorizeID(web))); err == nil {
		t.Fatal("a client trusting only the retired root still connected")
	}
}
