package federation_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// A follower names its leader (with the API address the leader
// advertises), takes the leader's writes without counting them, and
// counts a write of its own: a source running outside the leader.
func TestFollowerKnowsItsLeaderAndCountsStrayWrites(t *testing.T) {
	// Opened first, so that it closes after the lab stopped the members.
	etcd, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	l := newLab(t)
	api := func(addr string) func(*federation.Config) { return func(c *federation.Config) { c.APIAddr = addr } }
	r0 := l.start("ha", memberOpts{replica: "r0", sharedEtcd: etcd.ClientURL(), cfg: api("127.0.0.1:15010")})
	r1 := l.start("ha", memberOpts{replica: "r1", sharedEtcd: etcd.ClientURL(), cfg: api("127.0.0.1:15020")})
	apis := map[string]string{r0.name: "127.0.0.1:15010", r1.name: "127.0.0.1:15020"}
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
		node, addr, ok := follower.f.Leader()
		if !ok || node != leader.name || addr != apis[leader.name] {
			return fmt.Errorf("%s names leader %q at %q (known %v)", follower.name, node, addr, ok)
		}
		return nil
	})
	if node, addr, ok := leader.f.Leader(); !ok || node != leader.name || addr != apis[leader.name] {
		t.Fatalf("the leader names %q at %q", node, addr)
	}

	for i := range 5 {
		leader.apply(t, registry.PutEndpoint(endpoint("ha", fmt.Sprint("e", i), "10.4.0.1")))
	}
	testutil.Eventually(t, 20*time.Second, func() error { return sameSegment(leader, follower, "ha") })
	const stray = "meridian_federation_follower_segment_writes_total"
	if n := follower.counter(stray, nil); n != 0 {
		t.Fatalf("pulls from the leader counted as %v stray writes", n)
	}
	if _, err := follower.reg.Apply("ha", registry.PutEndpoint(endpoint("ha", "rogue", "10.4.0.9"))); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := follower.counter(stray, nil); n != 1 {
			return fmt.Errorf("%v stray writes counted, want 1", n)
		}
		return nil
	})
	if n := leader.counter(stray, nil); n != 0 {
		t.Fatalf("the leader counted %v stray writes", n)
	}
}
