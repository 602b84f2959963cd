package lb_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/locality/priority"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

func addr(h xdsconfig.HostSpec) string { return fmt.Sprintf("%s:%d", h.Address, h.Port) }

// loc builds one locality at a priority with n hosts, the first unhealthy
// ones unhealthy.
func loc(zone string, prio, weight uint32, n, unhealthy int) xdsconfig.LocalityEndpoints {
	l := xdsconfig.LocalityEndpoints{Locality: xdsconfig.Locality{Region: "r", Zone: zone}, Priority: prio, Weight: weight}
	for i := range n {
		h := xdsconfig.HostSpec{Address: fmt.Sprintf("10.%d.%d.%d", prio, len(zone), i), Port: 80, Weight: 1}
		if i < unhealthy {
			h.Health = xdsconfig.Unhealthy
		}
		l.Hosts = append(l.Hosts, h)
	}
	return l
}

func eps(ls ...xdsconfig.LocalityEndpoints) *xdsconfig.Endpoints {
	return &xdsconfig.Endpoints{Name: "c", Localities: ls, OverprovisioningFactor: 140}
}

// shares picks n times and returns the share of picks per zone.
func shares(b *lb.Balancer, n int) map[string]float64 {
	count := map[string]int{}
	for range n {
		h := b.Pick(nil)
		count[h.Locality().Zone]++
	}
	out := map[string]float64{}
	for z, c := range count {
		out[z] = 100 * float64(c) / float64(n)
	}
	return out
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.2f%%, want %.2f%% ± %.1f", what, got, want, tol)
	}
}

// TestPriorityLoadFollowsLocality: the share of each priority is the
// priority.PriorityLoad of the hosts' health (the function package
// locality uses), including Envoy's overprovisioning spill when a level is
// only partly healthy.
func TestPriorityLoadFollowsLocality(t *testing.T) {
	for _, tc := range []struct {
		name            string
		p0hosts, p0down int
		p1hosts, p1down int
	}{
		{"all healthy", 4, 0, 4, 0},
		{"p0 80% healthy: no spill", 5, 1, 4, 0},
		{"p0 60% healthy: 84/16", 5, 2, 4, 0},
		{"p0 down: all to p1", 4, 4, 4, 0},
		{"p0 half, p1 half", 4, 2, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := lb.New(lb.Config{LocalityWeighted: true, PanicThreshold: 50})
			b.Update(eps(loc("z0", 0, 1, tc.p0hosts, tc.p0down), loc("z1", 1, 1, tc.p1hosts, tc.p1down)), addr)
			want := priority.PriorityLoad([]priority.LevelHealth{
				{Healthy: tc.p0hosts - tc.p0down, Total: tc.p0hosts},
				{Healthy: tc.p1hosts - tc.p1down, Total: tc.p1hosts},
			}, priority.LoadOptions{})
			if got := b.Load(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("load = %v, want priority.PriorityLoad's %v", got, want)
			}
			s := shares(b, 40000)
			near(t, "p0", s["z0"], float64(want.Total(0)), 1.5)
			near(t, "p1", s["z1"], float64(want.Total(1)), 1.5)
		})
	}
}

func TestLocalityWeights(t *testing.T) {
	b := lb.New(lb.Config{LocalityWeighted: true, PanicThreshold: 50})
	b.Update(eps(loc("a", 0, 3, 2, 0), loc("b", 0, 1, 2, 0)), addr)
	s := shares(b, 8000)
	near(t, "a", s["a"], 75, 0.5)
	near(t, "b", s["b"], 25, 0.5)

	// Envoy scales a locality's weight by its availability,
	// min(1, 1.4 × healthy/total): with 1 of 2 healthy, a's 3 becomes 2.1.
	b.Update(eps(loc("a", 0, 3, 2, 1), loc("b", 0, 1, 2, 0)), addr)
	s = shares(b, 8000)
	near(t, "a", s["a"], 100*2.1/3.1, 0.5)
}

func TestWeightedRoundRobinIsExact(t *testing.T) {
	l := xdsconfig.LocalityEndpoints{Hosts: []xdsconfig.HostSpec{
		{Address: "10.0.0.1", Port: 1, Weight: 1}, {Address: "10.0.0.2", Port: 1, Weight: 2}, {Address: "10.0.0.3", Port: 1, Weight: 3}}}
	b := lb.New(lb.Config{})
	b.Update(eps(l), addr)
	count := map[string]int{}
	for range 600 {
		count[b.Pick(nil).Addr]++
	}
	if count["10.0.0.1:1"] != 100 || count["10.0.0.2:1"] != 200 || count["10.0.0.3:1"] != 300 {
		t.Fatalf("picks = %v, want exactly 100/200/300", count)
	}
}

func TestLeastRequest(t *testing.T) {
	l := xdsconfig.LocalityEndpoints{Hosts: []xdsconfig.HostSpec{{Address: "10.0.0.1", Port: 1, Weight: 1}, {Address: "10.0.0.2", Port: 1, Weight: 1}}}
	b := lb.New(lb.Config{Policy: xdsconfig.LBLeastRequest, ChoiceCount: 8})
	b.Update(eps(l), addr)
	busy := b.Hosts()[0]
	for range 10 {
		busy.Begin()
	}
	count := map[*lb.Host]int{}
	for range 1000 {
		count[b.Pick(nil)]++
	}
	if count[busy] > 10 {
		t.Fatalf("the busy host got %d of 1000 picks", count[busy])
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestOutlierEjection: consecutive errors eject a host at once, the
// ejected host gets nothing, max_ejection_percent caps ejections, and the
// host returns after base_ejection_time × ejections.
func TestOutlierEjection(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	od := &xdsconfig.Outlier{Consecutive5xx: 3, Enforcing5xx: 100, ConsecutiveGateway: 3, EnforcingGateway: 100,
		Interval: time.Second, BaseEjection: 10 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 50}
	var events []string
	b := lb.New(lb.Config{Outlier: od, PanicThreshold: 0, Now: clk.Now, OnEject: func(h *lb.Host, ej bool, reason string) {
		events = append(events, fmt.Sprintf("%s %v %s", h.Addr, ej, reason))
	}})
	b.Update(eps(loc("z", 0, 1, 4, 0)), addr)
	hs := b.Hosts()
	bad := hs[0]
	b.Report(bad, lb.ErrorGateway)
	b.Report(bad, lb.ErrorGateway)
	b.Report(bad, lb.Success) // resets
	b.Report(bad, lb.ErrorGateway)
	b.Report(bad, lb.ErrorGateway)
	if bad.Ejected() {
		t.Fatal("ejected before three consecutive errors")
	}
	b.Report(bad, lb.ErrorLocal) // a connect failure counts as a 503
	if !bad.Ejected() {
		t.Fatal("not ejected after three consecutive errors")
	}
	for range 1000 {
		if b.Pick(nil) == bad {
			t.Fatal("picked an ejected host")
		}
	}
	// 50%: a second host may go, a third may not.
	for _, h := range hs[1:3] {
		for range 3 {
			b.Report(h, lb.Error5xx)
		}
	}
	if !hs[1].Ejected() || hs[2].Ejected() {
		t.Fatalf("ejected = %v %v, want the second and not the third (max 50%%)", hs[1].Ejected(), hs[2].Ejected())
	}
	clk.add(9 * time.Second)
	b.Pick(nil)
	if !bad.Ejected() {
		t.Fatal("returned before base_ejection_time")
	}
	clk.add(time.Second)
	b.Pick(nil)
	if bad.Ejected() {
		t.Fatal("still ejected after base_ejection_time")
	}
	// A second ejection lasts twice as long.
	for range 3 {
		b.Report(bad, lb.ErrorGateway)
	}
	clk.add(15 * time.Second)
	b.Pick(nil)
	if !bad.Ejected() {
		t.Fatal("second ejection ended before 2 × base")
	}
	clk.add(6 * time.Second)
	b.Pick(nil)
	if bad.Ejected() {
		t.Fatal("second ejection did not end after 2 × base")
	}
	if len(events) < 4 {
		t.Fatalf("events = %v", events)
	}
}

// TestEjectionMovesPriority: ejecting a whole zone moves the priority load
// to the next level, as EDS health would.
func TestEjectionMovesPriority(t *testing.T) {
	od := &xdsconfig.Outlier{Consecutive5xx: 1, Enforcing5xx: 100, Interval: time.Second, BaseEjection: time.Minute, MaxEjectionPercent: 100}
	b := lb.New(lb.Config{Outlier: od, LocalityWeighted: true, PanicThreshold: 50})
	b.Update(eps(loc("z0", 0, 1, 2, 0), loc("z1", 1, 1, 2, 0)), addr)
	for _, h := range b.Hosts() {
		if h.Priority == 0 {
			b.Report(h, lb.Error5xx)
		}
	}
	if l := b.Load(); l.Total(0) != 0 || l.Total(1) != 100 {
		t.Fatalf("load = %v, want everything on priority 1", l)
	}
}

// TestRetrySkipsTriedPriority: once every host of priority 0 was tried,
// a retry goes to priority 1 (previous_priorities).
func TestRetrySkipsTriedPriority(t *testing.T) {
	b := lb.New(lb.Config{LocalityWeighted: true, PanicThreshold: 50})
	b.Update(eps(loc("z0", 0, 1, 2, 0), loc("z1", 1, 1, 2, 0)), addr)
	var p0 []*lb.Host
	for _, h := range b.Hosts() {
		if h.Priority == 0 {
			p0 = append(p0, h)
		}
	}
	for range 200 {
		if h := b.Pick(p0[:1]); h == p0[0] {
			t.Fatal("a retry picked the host it had tried")
		}
		if h := b.Pick(p0); h.Priority != 1 {
			t.Fatalf("a retry after both priority-0 hosts picked %s (priority %d)", h.Addr, h.Priority)
		}
	}
}

func TestPanicUsesAllHosts(t *testing.T) {
	b := lb.New(lb.Config{PanicThreshold: 50})
	b.Update(eps(loc("z", 0, 1, 4, 3)), addr)
	seen := map[string]bool{}
	for range 400 {
		seen[b.Pick(nil).Addr] = true
	}
	if len(seen) != 4 {
		t.Fatalf("panic mode used %d hosts, want all 4", len(seen))
	}
	if !b.Load().Panic[0] {
		t.Fatal("priority 0 is not in panic")
	}
}

func TestUpdateKeepsHostState(t *testing.T) {
	od := &xdsconfig.Outlier{Consecutive5xx: 1, Enforcing5xx: 100, Interval: time.Second, BaseEjection: time.Minute, MaxEjectionPercent: 100}
	b := lb.New(lb.Config{Outlier: od})
	b.Update(eps(loc("z", 0, 1, 3, 0)), addr)
	h := b.Hosts()[1]
	b.Report(h, lb.Error5xx)
	b.Update(eps(loc("z", 0, 1, 3, 0), loc("y", 0, 1, 1, 0)), addr)
	if !b.Hosts()[1].Ejected() || b.Hosts()[1] != h {
		t.Fatal("an EDS update lost the ejection of an unchanged host")
	}
	b.Update(nil, addr)
	if b.Pick(nil) != nil {
		t.Fatal("picked from an empty cluster")
	}
}

// TestNoAvailableHostPicksNothing: with every host unhealthy in EDS no
// host is picked (no healthy upstream), panic threshold or not; once one
// host is back, panic mode spreads over all hosts again. Hosts that are
// only ejected still get traffic in panic mode, as in Envoy.
func TestNoAvailableHostPicksNothing(t *testing.T) {
	for _, panicThreshold := range []uint32{0, 50} {
		b := lb.New(lb.Config{PanicThreshold: panicThreshold, LocalityWeighted: true})
		b.Update(eps(loc("z0", 0, 1, 2, 2), loc("z1", 1, 1, 2, 2)), addr)
		if h := b.Pick(nil); h != nil {
			t.Fatalf("panic %d: picked %s with every host unhealthy", panicThreshold, h.Addr)
		}
		if h := b.Pick(b.Hosts()[:1]); h != nil {
			t.Fatalf("panic %d: a retry picked %s with every host unhealthy", panicThreshold, h.Addr)
		}
		b.Update(eps(loc("z0", 0, 1, 2, 2), loc("z1", 1, 1, 2, 1)), addr)
		if h := b.Pick(nil); h == nil {
			t.Fatalf("panic %d: nothing picked with one healthy host", panicThreshold)
		}
	}
	od := &xdsconfig.Outlier{Consecutive5xx: 1, Enforcing5xx: 100, Interval: time.Second, BaseEjection: time.Minute, MaxEjectionPercent: 100}
	b := lb.New(lb.Config{Outlier: od, PanicThreshold: 50})
	b.Update(eps(loc("z", 0, 1, 2, 0)), addr)
	for _, h := range b.Hosts() {
		b.Report(h, lb.Error5xx)
	}
	if h := b.Pick(nil); h == nil {
		t.Fatal("nothing picked with every host ejected, want panic mode")
	}
}
