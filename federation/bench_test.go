package federation_test

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// The federation benchmarks are scenarios on loopback, each run once per
// b.N (run them with -benchtime 1x); bench/federation.sh prints their
// figures beside the baselines measured in the same run.

// benchLab starts n control planes with the LAN preset (what meridiand
// uses by default) and waits until each holds every segment.
func benchLab(b *testing.B, n int, preset federation.Gossip) *lab {
	l := newLab(b)
	l.preset = preset
	for i := range n {
		l.start(fmt.Sprintf("c%02d", i), memberOpts{})
	}
	testutil.Eventually(b, 2*time.Minute, func() error {
		for _, m := range l.all() {
			if got := len(m.reg.View().Clusters()); got != n {
				return fmt.Errorf("%s holds %d segments of %d", m.name, got, n)
			}
		}
		return l.converged()
	})
	return l
}

// visibleEverywhere waits until every member holds cluster's segment at
// version v or later and returns the time the last one got there. It polls
// the lock-free views every 200µs.
func visibleEverywhere(b *testing.B, ms []*member, cluster string, v uint64) time.Time {
	pending := slices.Clone(ms)
	deadline := time.Now().Add(time.Minute)
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(m *member) bool {
			seg := m.reg.View().Segment(cluster)
			return seg != nil && seg.Version() >= v
		})
		if time.Now().After(deadline) {
			b.Fatalf("change %s.%d not visible at %d members after a minute", cluster, v, len(pending))
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Now()
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkPropagation: time from one endpoint change at its owner until
// every member's global view holds it, for 3, 10 and 30 control planes;
// beside it, the time memberlist alone takes to spread one metadata update
// to every node with the same timing (the gossip floor).
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{3, 10, 30} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for range b.N {
				l := benchLab(b, n, federation.LAN())
				ms0 := l.all()
				var lat []time.Duration
				for i := range 100 {
					owner := ms0[rand.IntN(len(ms0))]
					start := time.Now()
					v, err := owner.reg.Apply(owner.cluster.Name, registry.PutEndpoint(endpoint(owner.cluster.Name, "hot", fmt.Sprintf("10.9.%d.%d", i/250, i%250+1))))
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, visibleEverywhere(b, ms0, owner.cluster.Name, v).Sub(start))
					time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
				}
				l.stopAll()
				base := gossipFloor(b, n, federation.LAN().Memberlist, 50)
				b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
				b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
				b.ReportMetric(ms(percentile(base, 0.5)), "gossip-p50-ms")
				b.ReportMetric(ms(percentile(base, 0.99)), "gossip-p99-ms")
			}
		})
	}
}

// floorNode is a bare memberlist node whose metadata the benchmark sets
// and whose update notifications it counts.
type floorNode struct {
	meta atomic.Value // []byte
	seen func(meta []byte)
}

func (n *floorNode) NodeMeta(int) []byte                { return n.meta.Load().([]byte) }
func (n *floorNode) NotifyMsg([]byte)                   {}
func (n *floorNode) GetBroadcasts(int, int) [][]byte    { return nil }
func (n *floorNode) LocalState(bool) []byte             { return nil }
func (n *floorNode) MergeRemoteState([]byte, bool)      {}
func (n *floorNode) NotifyJoin(*memberlist.Node)        {}
func (n *floorNode) NotifyLeave(*memberlist.Node)       {}
func (n *floorNode) NotifyUpdate(node *memberlist.Node) { n.seen(node.Meta) }

// gossipFloor measures how long memberlist itself takes to spread one
// metadata update to every node of a cluster of n with the given timing
// (encrypted like the federation), over samples updates.
func gossipFloor(b *testing.B, n int, timing *memberlist.Config, samples int) []time.Duration {
	var seen sync.Map // meta value → *atomic.Int64 nodes that saw it
	count := func(v string) *atomic.Int64 {
		c, _ := seen.LoadOrStore(v, new(atomic.Int64))
		return c.(*atomic.Int64)
	}
	var nodes []*memberlist.Memberlist
	var delegates []*floorNode
	defer func() {
		for _, ml := range nodes {
			_ = ml.Shutdown()
		}
	}()
	for i := range n {
		d := &floorNode{seen: func(meta []byte) { count(string(meta)).Add(1) }}
		d.meta.Store([]byte("0"))
		c := *timing
		c.Name = fmt.Sprintf("floor%02d", i)
		c.BindAddr, c.BindPort, c.AdvertisePort = "127.0.0.1", 0, 0
		c.SecretKey = testKey
		c.Delegate, c.Events = d, d
		c.Logger, c.LogOutput = log.New(io.Discard, "", 0), nil
		ml, err := memberlist.Create(&c)
		if err != nil {
			b.Fatal(err)
		}
		nodes, delegates = append(nodes, ml), append(delegates, d)
		if i > 0 {
			if _, err := ml.Join([]string{nodes[0].LocalNode().Address()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	testutil.Eventually(b, time.Minute, func() error {
		for _, ml := range nodes {
			if got := ml.NumMembers(); got != n {
				return fmt.Errorf("%s sees %d of %d", ml.LocalNode().Name, got, n)
			}
		}
		return nil
	})
	var out []time.Duration
	for i := range samples {
		src := rand.IntN(n)
		val := strconv.Itoa(i + 1)
		delegates[src].meta.Store([]byte(val))
		start := time.Now()
		go func() { _ = nodes[src].UpdateNode(time.Second) }()
		for count(val).Load() < int64(n-1) {
			if time.Since(start) > time.Minute {
				b.Fatalf("update %s seen by %d of %d", val, count(val).Load(), n-1)
			}
			time.Sleep(200 * time.Microsecond)
		}
		out = append(out, time.Since(start))
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	}
	return out
}

// sentBytes sums the bytes every member sent on one channel (each byte
// sent is received once, so this is the traffic on the wire).
func sentBytes(ms []*member, channel string) float64 {
	var sum float64
	for _, m := range ms {
		sum += m.counter("meridian_federation_bytes_total", map[string]string{"direction": "sent", "channel": channel})
	}
	return sum
}

// fill puts n endpoints (10 per service) into a member's segment.
func fill(b *testing.B, m *member, n int) uint64 {
	changes := make([]registry.Change, 0, n+n/10)
	for s := range n / 10 {
		key := registry.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%d", s)}
		changes = append(changes, registry.PutService(&registry.Service{Namespace: key.Namespace, Name: key.Name, Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}))
		for e := range 10 {
			changes = append(changes, registry.PutEndpoint(&registry.Endpoint{
				Service: key, ID: fmt.Sprintf("pod-%d", e), Addresses: []string{fmt.Sprintf("10.%d.%d.%d", s/256, s%256, e+1)},
				Port: 8080, Locality: registry.Locality{Region: "r-" + m.cluster.Name, Zone: fmt.Sprintf("z%d", e%3)},
			}))
		}
	}
	v, err := m.reg.Apply(m.cluster.Name, changes...)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkBytesPerChange: bytes on the wire, summed over the whole mesh of
// three control planes, for one endpoint change in a segment of 100 and of
// 10,000 endpoints — background gossip (probes, heartbeats) measured in an
// idle window of the same length and subtracted. Beside it, the bytes of one
// full copy of the segment: what shipping the segment on every change would
// cost per peer.
func BenchmarkBytesPerChange(b *testing.B) {
	for _, size := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("endpoints=%d", size), func(b *testing.B) {
			for range b.N {
				l := benchLab(b, 3, federation.LAN())
				defer l.stopAll()
				owner := l.members["c00/r0"]
				v := fill(b, owner, size)
				visibleEverywhere(b, l.all(), owner.cluster.Name, v)
				const changes = 100
				var dur time.Duration
				g0, r0 := sentBytes(l.all(), "gossip"), sentBytes(l.all(), "grpc")
				start := time.Now()
				for i := range changes {
					v, err := owner.reg.Apply(owner.cluster.Name, registry.PutEndpoint(&registry.Endpoint{
						Service: registry.ServiceKey{Namespace: "bench", Name: "svc-0"}, ID: "pod-0", Addresses: []string{fmt.Sprintf("10.200.%d.%d", i/250, i%250+1)},
						Port: 8080, Locality: registry.Locality{Region: "r-c00", Zone: "z0"},
					}))
					if err != nil {
						b.Fatal(err)
					}
					visibleEverywhere(b, l.all(), owner.cluster.Name, v)
				}
				dur = time.Since(start)
				g1, r1 := sentBytes(l.all(), "gossip"), sentBytes(l.all(), "grpc")
				time.Sleep(dur)
				g2, r2 := sentBytes(l.all(), "gossip"), sentBytes(l.all(), "grpc")
				idleG, idleR := g2-g1, r2-r1
				perChange := ((g1 - g0 - idleG) + (r1 - r0 - idleR)) / changes

				// One full copy: what a new member pulls.
				fresh := l.start("fresh", memberOpts{})
				before := fresh.counter("meridian_federation_bytes_total", map[string]string{"direction": "received", "channel": "grpc"})
				visibleEverywhere(b, []*member{fresh}, owner.cluster.Name, owner.reg.View().Segment("c00").Version())
				full := fresh.counter("meridian_federation_bytes_total", map[string]string{"direction": "received", "channel": "grpc"}) - before
				b.ReportMetric(perChange, "B/change")
				b.ReportMetric((r1-r0-idleR)/changes, "grpc-B/change")
				b.ReportMetric(full, "full-copy-B")
			}
		})
	}
}

// BenchmarkCatchUp: time for a new control plane to join and hold a
// 10,000-endpoint segment, beside the time to build the same segment in
// an empty registry locally (the floor: no network, no encoding).
func BenchmarkCatchUp(b *testing.B) {
	for range b.N {
		l := benchLab(b, 2, federation.LAN())
		owner := l.members["c00/r0"]
		v := fill(b, owner, 10_000)
		visibleEverywhere(b, l.all(), "c00", v)
		start := time.Now()
		fresh := l.start("fresh", memberOpts{})
		visibleEverywhere(b, []*member{fresh}, "c00", v)
		catchUp := time.Since(start)
		l.stopAll()

		data := owner.reg.View().Segment("c00").Data()
		local := registry.New(registry.Options{})
		start = time.Now()
		if err := local.Replace(data); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(ms(catchUp), "catchup-ms")
		b.ReportMetric(ms(time.Since(start)), "local-build-ms")
	}
}

// BenchmarkFailureDetection: time from a control plane's crash (all its
// links cut, then stopped) until every other member of a ten-member mesh
// marks its cluster dead, with the LAN preset and with memberlist's
// DefaultLANConfig, three crashes each.
func BenchmarkFailureDetection(b *testing.B) {
	presets := map[string]federation.Gossip{"meridian-lan": federation.LAN()}
	ml := federation.LAN()
	ml.Memberlist = memberlist.DefaultLANConfig()
	presets["memberlist-lan"] = ml
	for _, name := range []string{"meridian-lan", "memberlist-lan"} {
		b.Run("preset="+name, func(b *testing.B) {
			for range b.N {
				l := benchLab(b, 10, presets[name])
				var took []time.Duration
				for _, victim := range []string{"c03/r0", "c06/r0", "c09/r0"} {
					m := l.members[victim]
					start := time.Now()
					l.kill(m)
					testutil.Eventually(b, 2*time.Minute, func() error {
						for _, o := range l.all() {
							if st := o.status(m.cluster.Name); st != registry.Dead {
								return fmt.Errorf("%s sees %s %v", o.name, m.cluster.Name, st)
							}
						}
						return nil
					})
					took = append(took, time.Since(start))
				}
				l.stopAll()
				var sum time.Duration
				for _, d := range took {
					sum += d
				}
				b.ReportMetric(ms(sum/time.Duration(len(took))), "detect-ms")
				b.ReportMetric(ms(slices.Max(took)), "detect-max-ms")
			}
		})
	}
}
