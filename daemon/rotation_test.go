package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/internal/tlstest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/mtls"
)

// Three federated meridiands — the root holder and two clusters with
// intermediates from the same root — rotate the mesh's root with one
// `meridianctl trust rotate`, asked of a cluster that does not hold the
// root (it sends the command on). Workloads of both other clusters call
// one in the root holder's over mTLS, a new handshake per request, the
// whole time: not one fails. Bundles and intermediates travel through
// federation only.
func TestRootRotationAcrossTheMesh(t *testing.T) {
	m := newTrustMesh(t)
	dc1 := m.cluster("dc1", "east", m.caDir, "")
	seed := dc1.d.Federation.GossipAddr()
	dc2 := m.cluster("dc2", "west", "", m.intermediate(m.caDir, "dc2"), seed)
	dc3 := m.cluster("dc3", "north", "", m.intermediate(m.caDir, "dc3"), seed)
	all := []*running{dc1, dc2, dc3}
	testutil.Eventually(t, 60*time.Second, func() error {
		code, out, errOut := ctl("trust", "rotate", "status", "--server", dc1.d.GRPCAddr())
		if code != 0 || strings.Count(out, "(current)") != 3 {
			return fmt.Errorf("not every cluster has published its trust state:\n%s%s", out, errOut)
		}
		return nil
	})

	web := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	addr := tlstest.EchoServer(t, mtls.ServerTLS(dc1.d.Trust.SVIDs.Source(web), dc1.d.Trust.Bundles))
	var traffic []*tlstest.Traffic
	for _, c := range []*running{dc2, dc3} {
		api := spiffeid.RequireFromString("spiffe://mesh.test/ns/" + c.d.Config.Cluster.Name + "/sa/api")
		traffic = append(traffic, tlstest.StartTraffic(t, addr, mtls.ClientTLS(c.d.Trust.SVIDs.Source(api), c.d.Trust.Bundles, web), 2))
	}
	for _, tr := range traffic {
		tr.WaitMore(t, 20)
	}
	before, _ := dc1.d.Trust.Bundles.Get(spiffeid.RequireTrustDomainFromString(m.trustDomain))
	unverified := func(c *running) float64 {
		return counter(t, c.d.Metrics, "meridian_federation_dropped_messages_total", "reason", "unverified")
	}
	unverifiedBefore := map[*running]float64{}
	for _, c := range all {
		unverifiedBefore[c] = unverified(c)
	}

	code, out, errOut := ctl("trust", "rotate", "--server", dc2.d.GRPCAddr(), "--overlap", "300ms", "--poll", "100ms", "--wait-timeout", "30s")
	t.Logf("meridianctl trust rotate:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("trust rotate: exit %d", code)
	}
	for _, want := range []string{"sends this to " + dc1.d.GRPCAddr(), "prepare:", "activate:", "retire:", "every cluster has caught up", "root rotated"} {
		if !strings.Contains(out+errOut, want) {
			t.Errorf("trust rotate output lacks %q", want)
		}
	}
	for _, tr := range traffic {
		tr.WaitMore(t, 20)
		tr.Stop()
	}
	var ok int64
	for _, tr := range traffic {
		n, failed, last := tr.Counts()
		ok += n
		if failed != 0 {
			t.Fatalf("%d of %d handshakes failed; last: %v", failed, n+failed, last)
		}
	}
	t.Logf("root rotated across 3 clusters under %d mTLS handshakes, 0 failed", ok)

	td := spiffeid.RequireTrustDomainFromString(m.trustDomain)
	for _, c := range all {
		b, _ := c.d.Trust.Bundles.Get(td)
		if len(b.X509Authorities()) != 1 || b.X509Authorities()[0].Equal(before.X509Authorities()[0]) {
			t.Fatalf("%s still trusts the old root", c.d.Config.Cluster.Name)
		}
		chain := c.d.Trust.Authority.Chain()
		if err := chain[len(chain)-1].CheckSignatureFrom(b.X509Authorities()[0]); err != nil {
			t.Fatalf("%s's intermediate is not under the new root: %v", c.d.Config.Cluster.Name, err)
		}
		if got := bundle.KeyID(b.X509Authorities()[0]); counter(t, c.d.Metrics, "meridian_trust_exchange_refused_total", "what", "bundle_update") != 0 {
			t.Fatalf("%s refused a bundle update on the way to %s", c.d.Config.Cluster.Name, got)
		}
		// Every cluster connected again after activate (federation's
		// Reconnect): none presented a member certificate under the
		// retired root, so none was refused.
		if n := unverified(c) - unverifiedBefore[c]; n != 0 {
			t.Fatalf("%s refused %v federation calls from members during the rotation", c.d.Config.Cluster.Name, n)
		}
	}
	// Federation still replicates between the clusters.
	register(t, dc3.d.GRPCAddr(), "after", "10.3.0.9:8080", "north")
	testutil.Eventually(t, 30*time.Second, func() error {
		if seg := dc1.d.Registry.View().Segment("dc3"); seg == nil || seg.EndpointCount() != 1 {
			return fmt.Errorf("dc1 does not hold dc3's new endpoint")
		}
		return nil
	})
}
