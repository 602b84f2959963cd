package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/lab/traffic"
)

// TestLocality: users in every cluster are served by their own cluster
// along the whole chain (frontend → catalog → inventory), and inventory
// called directly from a zone is served by that zone.
func TestLocality(t *testing.T) {
	m := theMesh(t)
	for _, c := range m.lab.State.Clusters {
		g := m.users(t, c.Name, c.Zones[0], 50, lab.Frontend, lab.Inventory)
		waitServed(t, g, lab.Frontend, c.Name, 30*time.Second)
		collect(t, g, 2*time.Second)
		fr, inv := last(g, lab.Frontend, 2*time.Second), last(g, lab.Inventory, 2*time.Second)
		for path := range fr.Paths {
			for _, hop := range strings.Split(path, " > ") {
				if !strings.Contains(hop, "@"+c.Name+"/") {
					t.Errorf("users in %s: a request went %s", c.Name, path)
				}
			}
		}
		zoneOK := 0
		for path, n := range inv.Paths {
			if strings.HasSuffix(path, "@"+c.Name+"/"+c.Zones[0]) {
				zoneOK += n
			}
		}
		if zoneOK != inv.OK || inv.OK == 0 {
			t.Errorf("users in %s/%s → inventory: %v; want all from their own zone", c.Name, c.Zones[0], inv.Paths)
		}
		t.Logf("users in %s/%s: frontend chain %s, all in %s; inventory %d/%d from their own zone",
			c.Name, c.Zones[0], fr.Summary(), c.Name, zoneOK, inv.Requests)
	}
}

// TestRegionFailover cuts us-east-1 under load: users on-prem call
// checkout, which on-prem does not run, through grpc-go's xDS client.
func TestRegionFailover(t *testing.T) {
	m := theMesh(t)
	onprem := m.cluster(t, "onprem-dc1")
	regionFailover(t, m, m.users(t, onprem.Name, onprem.Zones[0], 200, Checkout), "proxyless gRPC")
}

// regionFailover measures users on-prem calling checkout while us-east-1
// is cut: they are served in us-east-1, and in eu-west-1 (the next region
// of the failover policy) while it is cut. Figures: time until ≥99%
// success after the cut (detection included), the errors during the
// switch, and the way back after healing.
func regionFailover(t *testing.T, m *mesh, g *traffic.Generator, path string) {
	t.Helper()
	waitServed(t, g, Checkout, "eks-use1", 30*time.Second)
	cut := time.Now()
	if err := m.lab.State.Cut(t.Context(), "eks-use1"); err != nil {
		t.Fatal(err)
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if err := m.lab.State.Heal(context.Background(), "eks-use1"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(heal)
	waitServed(t, g, Checkout, "eks-euw1", 60*time.Second)
	// Judge recovery over several seconds of traffic after the switch.
	collect(t, g, 5*time.Second)
	rec := g.Recovery(Checkout, cut, 0.99, time.Second)
	if !rec.Recovered {
		t.Fatalf("no recovery to 99%% after the cut: %+v", rec)
	}
	t.Logf("region failover, %s (us-east-1 cut, users on-prem → checkout): ≥99%% success %v after the cut (detection included), %s; %d of %d calls failed during the switch",
		path, rec.After.Round(10*time.Millisecond), within(rec.After, 2*time.Second), rec.Failed, rec.Requests)

	back := time.Now()
	heal()
	took := moved(t, g, Checkout, back, servedBy("eks-use1", ""))
	rb, _ := g.Between(back, back.Add(took+time.Second)).Target(Checkout)
	t.Logf("failback, %s: all traffic back in eks-use1 %v after the heal; calls meanwhile %s", path, took, rb.Summary())
}

// TestResidency cuts eu-west-1 entirely: customer-records, which a
// ResidencyRule keeps in the EU (a stray copy runs in us-east-1), must
// fail for everyone while the EU is out — and never be served elsewhere,
// before, during or after.
func TestResidency(t *testing.T) {
	m := theMesh(t)
	var users []*userGroup
	for _, c := range m.lab.State.Clusters {
		users = append(users, &userGroup{c.Name, m.users(t, c.Name, c.Zones[0], 50, lab.CustomerRecords)})
	}
	for _, u := range users {
		waitServed(t, u.g, lab.CustomerRecords, "eks-euw1", 30*time.Second)
	}
	start := time.Now()
	if err := m.lab.State.Cut(t.Context(), "eks-euw1"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	// The outage lasts 8s, long enough for every control plane to declare
	// the EU dead.
	for _, u := range users {
		collect(t, u.g, 8*time.Second-time.Since(cut))
	}
	if err := m.lab.State.Heal(t.Context(), "eks-euw1"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	for _, u := range users {
		waitServed(t, u.g, lab.CustomerRecords, "eks-euw1", 60*time.Second)
	}
	violations, during, failedDuring := 0, 0, 0
	for _, u := range users {
		all, _ := u.g.Between(start.Add(-time.Minute), time.Now()).Target(lab.CustomerRecords)
		// The outage: calls started after the cut (from the next bucket
		// on) and early enough to have ended, at their deadline, before
		// the heal.
		out, _ := u.g.Between(cut.Add(traffic.Bucket), healed.Add(-time.Second-traffic.Bucket)).Target(lab.CustomerRecords)
		violations += servedOutside(all, "eks-euw1")
		during += out.Requests
		failedDuring += out.Requests - out.OK
		if out.OK > 0 {
			t.Errorf("users in %s: %d customer-records calls succeeded while the EU was cut: %v", u.cluster, out.OK, out.Served)
		}
		t.Logf("users in %s: during the EU outage %s", u.cluster, out.Summary())
	}
	if violations > 0 {
		t.Errorf("%d customer-records calls were served outside eu-west-1", violations)
	}
	t.Logf("residency during a complete EU outage (%v): %d of %d EU-only calls failed, %d served outside the EU (the stray us-east-1 copy never answered)",
		healed.Sub(cut).Round(100*time.Millisecond), failedDuring, during, violations)
}

type userGroup struct {
	cluster string
	g       *traffic.Generator
}

// TestLiveDrill runs what a user types — meridianctl drill region
// us-east-1 --live — against us-east-1's meridiand: traffic of users in
// us-east-1 leaves the region while the drill lasts and comes back after,
// and customer-records stays in eu-west-1 throughout.
func TestLiveDrill(t *testing.T) {
	m := theMesh(t)
	use1 := m.cluster(t, "eks-use1")
	g := m.users(t, use1.Name, use1.Zones[0], 50, lab.Frontend, lab.CustomerRecords)
	waitServed(t, g, lab.Frontend, use1.Name, 30*time.Second)
	waitServed(t, g, lab.CustomerRecords, "eks-euw1", 30*time.Second)

	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- cli.Execute(context.Background(), []string{"--server", use1.GRPC, "drill", "region", use1.Region, "--live", "--duration", "10s"}, &out, &errOut)
	}()
	left := moved(t, g, lab.Frontend, start, servedBy("onprem-dc1", ""))
	var code int
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the drill did not end within 60s")
	}
	if code != 0 {
		t.Fatalf("meridianctl drill: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	ended := time.Now()
	returned := moved(t, g, lab.Frontend, ended, servedBy(use1.Name, ""))
	all, _ := g.Between(start, time.Now()).Target(lab.CustomerRecords)
	if n := servedOutside(all, "eks-euw1"); n > 0 {
		t.Errorf("%d customer-records calls left eu-west-1 during the drill", n)
	}
	during, _ := g.Between(start.Add(left), ended).Target(lab.Frontend)
	t.Logf("live drill of us-east-1 (10s): users in us-east-1 left the region %v after meridianctl started, were back %v after it returned; during: frontend %s; customer-records %s",
		left.Round(10*time.Millisecond), returned.Round(10*time.Millisecond), during.Summary(), all.Summary())
	t.Logf("meridianctl drill said:\n%s", out.String())
}
