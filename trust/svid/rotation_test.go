package svid_test

import (
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/internal/tlstest"
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
	addr := tlstest.EchoServer(t, tlsconfig.MTLSServerConfig(a.svids.Source(web), a.bundles, tlsconfig.AuthorizeMemberOf(td)))
	tr := tlstest.StartTraffic(t, addr, tlsconfig.MTLSClientConfig(b.svids.Source(db), b.bundles, tlsconfig.AuthorizeID(web)), 4)
	tr.WaitMore(t, 50)

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
		tr.WaitMore(t, 50)
	}
	for _, c := range []*cluster{a, b} {
		c.resign(t, r2)
		tr.WaitMore(t, 50)
	}
	b2, _ := a.bundles.Get(td)
	retire, err := bundle.Sign(bundle.Next(b2, nil, []*x509.Certificate{r1.Certificate()}), r2.Certificate(), r2.Signer())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*cluster{a, b} {
		c.receive(t, retire)
		tr.WaitMore(t, 50)
	}
	tr.Stop()
	ok, failed, last := tr.Counts()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; last: %v", failed, failed+ok, last)
	}
	t.Logf("root rotated under %d mTLS requests, 0 failed", ok)
	for _, c := range []*cluster{a, b} {
		s, _ := c.svids.Get(web)
		if _, _, err := x509svid.Verify(s.Certificates, bundle.NewSource(trusttest.Bundle(r2))); err != nil {
			t.Fatalf("%s: SVID does not chain to the new root alone: %v", c.name, err)
		}
	}

	// The control: a client that never got the new root fails.
	stale := newCluster(t, r1, "b", b1)
	if err := tlstest.RoundTrip(addr, tlsconfig.MTLSClientConfig(stale.svids.Source(db), stale.bundles, tlsconfig.AuthorizeID(web))); err == nil {
		t.Fatal("a client trusting only the retired root still connected")
	}
}
