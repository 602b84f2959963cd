package federation_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// Three control planes, each with its own etcd, converge on one global
// view; a later change to one endpoint reaches every view.
func TestThreeClustersConverge(t *testing.T) {
	l := newLab(t)
	var ms []*member
	for _, c := range []string{"east", "west", "north"} {
		ms = append(ms, l.start(c, memberOpts{withEtcd: true}))
	}
	for i, m := range ms {
		m.apply(t, registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 8080, Protocol: registry.ProtocolHTTP}}}),
			registry.PutEndpoint(endpoint(m.cluster.Name, "a", fmt.Sprintf("10.0.%d.1", i))),
			registry.PutEndpoint(endpoint(m.cluster.Name, "b", fmt.Sprintf("10.0.%d.2", i))))
	}
	testutil.Eventually(t, 30*time.Second, l.converged)
	for _, m := range ms {
		if n := len(m.reg.View().Endpoints(web)); n != 6 {
			t.Fatalf("%s sees %d endpoints of web, want 6", m.name, n)
		}
		for _, o := range ms {
			if o != m && m.status(o.cluster.Name) != registry.Alive {
				t.Fatalf("%s sees %s as %v", m.name, o.cluster.Name, m.status(o.cluster.Name))
			}
		}
	}
	ms[1].apply(t, registry.PutEndpoint(endpoint("west", "a", "10.9.9.9")))
	testutil.Eventually(t, 10*time.Second, l.converged)
	e, _ := ms[0].reg.View().Segment("west").Endpoint(registry.EndpointKey{Service: web, ID: "a"})
	if e.Address() != "10.9.9.9" {
		t.Fatalf("east sees west/a at %s", e.Address())
	}
}

// Five control planes; one is killed (its links cut, then stopped — no
// goodbye): the others mark its cluster dead and its endpoints unhealthy.
// While it is down the others change; it restarts from its etcd under a
// new epoch and catches up, and everyone takes its restored segment.
func TestFiveClustersKillAndRestart(t *testing.T) {
	l := newLab(t)
	var ms []*member
	for i, c := range []string{"c1", "c2", "c3", "c4", "c5"} {
		m := l.start(c, memberOpts{withEtcd: true})
		m.apply(t, registry.PutEndpoint(endpoint(c, "a", fmt.Sprintf("10.1.%d.1", i))))
		ms = append(ms, m)
	}
	testutil.Eventually(t, 30*time.Second, l.converged)
	if _, err := ms[0].f.Policies().Put(ctx, policyKey("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	victim := ms[4]
	oldEpoch := victim.reg.View().Segment("c5").Epoch()
	l.kill(victim)
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, m := range ms[:4] {
			if st := m.status("c5"); st != registry.Dead {
				return fmt.Errorf("%s sees c5 %v", m.name, st)
			}
			if h, err := m.effective("c5", "a"); err != nil || h != registry.Unhealthy {
				return fmt.Errorf("%s: c5/a is %v (%v)", m.name, h, err)
			}
		}
		return nil
	})
	ms[1].apply(t, registry.PutEndpoint(endpoint("c2", "b", "10.1.1.2")))
	if _, err := ms[2].f.Policies().Put(ctx, policyKey("while-down"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	again := l.start("c5", memberOpts{withEtcd: true, dataDir: victim.dataDir, gossip: victim.gossip, grpcPort: victim.grpcPort})
	ms[4] = again
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := l.converged(); err != nil {
			return err
		}
		for _, m := range ms {
			for _, k := range []string{"before", "while-down"} {
				if _, ok := m.f.Policies().Snapshot().Get(policyKey(k)); !ok {
					return fmt.Errorf("%s lacks policy %s", m.name, k)
				}
			}
			if m != again && m.status("c5") != registry.Alive {
				return fmt.Errorf("%s sees c5 %v", m.name, m.status("c5"))
			}
		}
		return nil
	})
	seg := ms[0].reg.View().Segment("c5")
	if seg.Epoch() <= oldEpoch || seg.EndpointCount() != 1 {
		t.Fatalf("restarted c5: epoch %d (was %d), %d endpoints; want a new epoch with its endpoint restored", seg.Epoch(), oldEpoch, seg.EndpointCount())
	}
	if again.reg.View().Segment("c2").EndpointCount() != 2 {
		t.Fatal("restarted c5 did not catch up with c2")
	}
}

// A and B cannot reach each other; C reaches both. Changes still flow
// both ways through C, and A and B stay alive for each other.
func TestThirdClusterBridgesACutLink(t *testing.T) {
	l := newLab(t)
	a := l.start("a", memberOpts{withEtcd: true})
	b := l.start("b", memberOpts{withEtcd: true})
	c := l.start("c", memberOpts{withEtcd: true})
	for _, m := range []*member{a, b, c} {
		m.apply(t, registry.PutEndpoint(endpoint(m.cluster.Name, "x", "10.2.0.1")))
	}
	testutil.Eventually(t, 30*time.Second, l.converged)
	l.net.Cut(a.name, b.name)
	a.apply(t, registry.PutEndpoint(endpoint("a", "y", "10.2.0.2")))
	b.apply(t, registry.PutEndpoint(endpoint("b", "y", "10.2.0.3")))
	testutil.Eventually(t, 20*time.Second, func() error {
		if err := l.converged(); err != nil {
			return err
		}
		if a.status("b") != registry.Alive || b.status("a") != registry.Alive {
			return fmt.Errorf("a sees b %v, b sees a %v", a.status("b"), b.status("a"))
		}
		return nil
	})
	l.net.Heal(a.name, b.name)
	a.apply(t, registry.PutEndpoint(endpoint("a", "z", "10.2.0.4")))
	testutil.Eventually(t, 20*time.Second, l.converged)
}

// Writes on both sides of a partition — to the same policy, a delete
// against a write, endpoints — all survive the heal, and every cluster
// settles on the same winner for each policy.
func TestPartitionedWritesConvergeToOneWinner(t *testing.T) {
	l := newLab(t)
	a := l.start("a", memberOpts{withEtcd: true})
	b := l.start("b", memberOpts{withEtcd: true})
	c := l.start("c", memberOpts{withEtcd: true})
	for _, k := range []string{"contested", "deleted"} {
		if _, err := a.f.Policies().Put(ctx, policyKey(k), []byte("v0")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() error { return samePolicies(l.all()) })
	heal := l.isolate(a)
	testutil.Eventually(t, 30*time.Second, func() error {
		if a.status("b") != registry.Dead || b.status("a") != registry.Dead {
			return fmt.Errorf("not partitioned yet: a sees b %v, b sees a %v", a.status("b"), b.status("a"))
		}
		return nil
	})
	ra, err := a.f.Policies().Put(ctx, policyKey("contested"), []byte("from-a"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.f.Policies().Put(ctx, policyKey("contested"), []byte("from-b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.f.Policies().Delete(ctx, policyKey("deleted")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.f.Policies().Put(ctx, policyKey("only-c"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	a.apply(t, registry.PutEndpoint(endpoint("a", "p", "10.3.0.1")))
	b.apply(t, registry.PutEndpoint(endpoint("b", "p", "10.3.0.2")))
	heal()
	want := "from-a"
	if rb.Newer(ra) {
		want = "from-b"
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := samePolicies(l.all()); err != nil {
			return err
		}
		return l.converged()
	})
	for _, m := range l.all() {
		snap := m.f.Policies().Snapshot()
		if r, _ := snap.Get(policyKey("contested")); r == nil || string(r.Spec) != want {
			t.Errorf("%s: contested = %v, want %s", m.name, r, want)
		}
		if _, ok := snap.Get(policyKey("deleted")); ok {
			t.Errorf("%s: the delete from the other side was lost", m.name)
		}
		if _, ok := snap.Get(policyKey("only-c")); !ok {
			t.Errorf("%s: lacks only-c", m.name)
		}
		for _, c := range []string{"a", "b"} {
			if _, err := m.effective(c, "p"); err != nil {
				t.Errorf("endpoint written during the partition lost: %v", err)
			}
		}
	}
	// Once every member has reached the delete, its tombstone is collected
	// everywhere.
	testutil.Eventually(t, 60*time.Second, func() error {
		for _, m := range l.all() {
			if n := m.f.Policies().Snapshot().Tombstones(); n != 0 {
				return fmt.Errorf("%s still holds %d tombstones (horizon %s)", m.name, n, m.f.Policies().Horizon())
			}
		}
		return nil
	})
}

// Two replicas of one cluster share an etcd; the leader dies (links cut,
// etcd client gone, so its lease expires rather than being revoked). The
// other replica takes over within seconds, under a new epoch, with every
// write the old leader published and every policy written through either
// replica.
func TestLeaderFailoverLosesNoWrite(t *testing.T) {
	l := newLab(t)
	etcd, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	obs := l.start("obs", memberOpts{withEtcd: true})
	r0 := l.start("ha", memberOpts{replica: "r0", sharedEtcd: etcd.ClientURL()})
	r1 := l.start("ha", memberOpts{replica: "r1", sharedEtcd: etcd.ClientURL()})
	var leader, follower *member
	testutil.Eventually(t, 20*time.Second, func() error {
		switch {
		case r0.f.Leading() && !r1.f.Leading():
			leader, follower = r0, r1
		case r1.f.Leading() && !r0.f.Leading():
			leader, follower = r1, r0
		default:
			return fmt.Errorf("leaders: r0 %v, r1 %v", r0.f.Leading(), r1.f.Leading())
		}
		return nil
	})
	leader.apply(t, registry.PutEndpoint(endpoint("ha", "e1", "10.4.0.1")))
	if _, err := follower.f.Policies().Put(ctx, policyKey("via-follower"), []byte("f")); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.f.Policies().Put(ctx, policyKey("via-leader"), []byte("l")); err != nil {
		t.Fatal(err)
	}
	// Published: the observer and the follower hold the write.
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, m := range []*member{obs, follower} {
			if _, err := m.effective("ha", "e1"); err != nil {
				return err
			}
		}
		return samePolicies([]*member{obs, leader, follower})
	})
	oldEpoch := leader.reg.View().Segment("ha").Epoch()
	killed := time.Now()
	l.kill(leader)
	testutil.Eventually(t, 20*time.Second, func() error {
		if !follower.f.Leading() {
			return fmt.Errorf("%s has not taken over", follower.name)
		}
		return nil
	})
	t.Logf("new leader %s after %v", follower.name, time.Since(killed).Round(time.Millisecond))
	follower.apply(t, registry.PutEndpoint(endpoint("ha", "e2", "10.4.0.2")))
	testutil.Eventually(t, 20*time.Second, func() error {
		seg := obs.reg.View().Segment("ha")
		if seg.Epoch() <= oldEpoch || seg.EndpointCount() != 2 {
			return fmt.Errorf("observer holds ha at epoch %d with %d endpoints", seg.Epoch(), seg.EndpointCount())
		}
		if st := obs.status("ha"); st != registry.Alive {
			return fmt.Errorf("observer sees ha %v", st)
		}
		return samePolicies([]*member{obs, follower})
	})
	if _, ok := obs.f.Policies().Snapshot().Get(policyKey("via-leader")); !ok {
		t.Fatal("policy written through the dead leader was lost")
	}
}

// A cluster whose control plane is alive but whose data cannot be pulled
// turns Unreachable (endpoints stale, still served); a killed one is
// Suspect (stale) and then Dead (unhealthy); one that stops gracefully has
// Left (as dead).
func TestDeadVersusUnreachable(t *testing.T) {
	l := newLab(t)
	a := l.start("a", memberOpts{})
	b := l.start("b", memberOpts{})
	c := l.start("c", memberOpts{})
	for _, m := range []*member{a, b, c} {
		m.apply(t, registry.PutEndpoint(endpoint(m.cluster.Name, "x", "10.5.0.1")))
	}
	testutil.Eventually(t, 30*time.Second, l.converged)

	l.net.CutRPC(a.name, true)
	a.apply(t, registry.PutEndpoint(endpoint("a", "y", "10.5.0.2")))
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, m := range []*member{b, c} {
			if st := m.status("a"); st != registry.Unreachable {
				return fmt.Errorf("%s sees a %v", m.name, st)
			}
			if h, _ := m.effective("a", "x"); h != registry.Stale {
				return fmt.Errorf("%s: a/x is %v", m.name, h)
			}
		}
		return nil
	})
	if age := b.reg.View().Status("a").LastSeen; age.IsZero() || time.Since(age) < l.preset.StaleAfter {
		t.Fatalf("stale age: last seen %v", age)
	}
	l.net.CutRPC(a.name, false)
	testutil.Eventually(t, 20*time.Second, func() error {
		if st := b.status("a"); st != registry.Alive {
			return fmt.Errorf("b sees a %v", st)
		}
		return l.converged()
	})

	// Record every state b gives a from now on.
	sub := b.reg.Subscribe()
	defer sub.Close()
	var mu sync.Mutex
	var seen []string
	go func() {
		for {
			v, d, err := sub.Next(ctx2(t))
			if err != nil {
				return
			}
			if _, ok := d.Clusters["a"]; ok || d.Full {
				e, _ := v.Segment("a").Endpoint(registry.EndpointKey{Service: web, ID: "x"})
				h, _ := v.EffectiveHealth(e)
				mu.Lock()
				seen = append(seen, v.Status("a").State.String()+"/"+h.String())
				mu.Unlock()
			}
		}
	}()
	l.kill(a)
	testutil.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(seen, "suspect/stale") || !slices.Contains(seen, "dead/unhealthy") ||
			slices.Index(seen, "suspect/stale") > slices.Index(seen, "dead/unhealthy") {
			return fmt.Errorf("b saw a go %v; want suspect/stale, then dead/unhealthy", seen)
		}
		return nil
	})
	l.stop(c)
	testutil.Eventually(t, 20*time.Second, func() error {
		if st := b.status("c"); st != registry.Left {
			return fmt.Errorf("b sees c %v", st)
		}
		if h, _ := b.effective("c", "x"); h != registry.Unhealthy {
			return fmt.Errorf("c/x is %v", h)
		}
		return nil
	})
}

// ctx2 is a context cancelled when the test ends.
func ctx2(t *testing.T) context.Context {
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return c
}

// A second control plane claiming an existing cluster's name under another
// identity (its own etcd) is refused everywhere and counted; the real
// cluster's data is untouched.
func TestSplitBrainIsRefused(t *testing.T) {
	l := newLab(t)
	a := l.start("a", memberOpts{})
	b := l.start("b", memberOpts{})
	a.apply(t, registry.PutEndpoint(endpoint("a", "real", "10.6.0.1")))
	testutil.Eventually(t, 20*time.Second, l.converged)
	imposter := l.start("a", memberOpts{replica: "imposter"})
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := b.counter("meridian_federation_dropped_messages_total", map[string]string{"reason": "split_brain"}); n == 0 {
			return fmt.Errorf("b counted no split brain")
		}
		if n := a.counter("meridian_federation_dropped_messages_total", map[string]string{"reason": "split_brain"}); n == 0 {
			return fmt.Errorf("a counted no split brain")
		}
		return nil
	})
	for _, m := range []*member{a, b} {
		for _, ms := range m.f.Status().Members {
			if ms.Name == imposter.name {
				t.Fatalf("%s admitted the imposter: %+v", m.name, ms)
			}
		}
	}
	for _, ms := range imposter.f.Status().Members {
		if ms.Name != imposter.name {
			t.Fatalf("the imposter admitted %s", ms.Name)
		}
	}
	seg := b.reg.View().Segment("a")
	if _, ok := seg.Endpoint(registry.EndpointKey{Service: web, ID: "real"}); !ok || b.status("a") != registry.Alive {
		t.Fatalf("b's copy of a was disturbed: %d endpoints, %v", seg.EndpointCount(), b.status("a"))
	}
}

// refuseCluster is an Authenticator that refuses one cluster's members, as
// a certificate check refuses a member whose identity does not chain to
// the mesh root.
type refuseCluster string

func (r refuseCluster) Authenticate(cluster string, st tls.ConnectionState) error {
	if len(st.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	if cluster == string(r) {
		return fmt.Errorf("cluster %s: identity refused", cluster)
	}
	return nil
}

// With an Authenticator, a member whose identity is refused never counts:
// its cluster stays out of the registry, its pulls are refused, and the
// others carry on without it.
func TestAuthenticatorRefusesAMember(t *testing.T) {
	l := newLab(t)
	auth := func(c *federation.Config) { c.Authenticator = refuseCluster("evil") }
	a := l.start("a", memberOpts{cfg: auth})
	b := l.start("b", memberOpts{cfg: auth})
	evil := l.start("evil", memberOpts{cfg: auth})
	evil.apply(t, registry.PutEndpoint(endpoint("evil", "x", "10.7.0.1")))
	a.apply(t, registry.PutEndpoint(endpoint("a", "x", "10.7.0.2")))
	testutil.Eventually(t, 20*time.Second, func() error {
		if err := sameSegment(a, b, "a"); err != nil {
			return err
		}
		for _, m := range []*member{a, b} {
			if n := m.counter("meridian_federation_dropped_messages_total", map[string]string{"reason": "unverified"}); n == 0 {
				return fmt.Errorf("%s refused nothing yet", m.name)
			}
		}
		return nil
	})
	for _, m := range []*member{a, b} {
		if m.reg.View().Segment("evil") != nil {
			t.Fatalf("%s took the refused cluster into its registry", m.name)
		}
		for _, ms := range m.f.Status().Members {
			if ms.Name == evil.name && ms.Verified {
				t.Fatalf("%s verified the refused member", m.name)
			}
		}
	}
	if evil.reg.View().Segment("a") != nil && evil.reg.View().Segment("a").EndpointCount() > 0 {
		t.Fatal("the refused member pulled a's segment")
	}
}
