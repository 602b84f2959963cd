package priority_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridian-mesh/meridian/locality/priority"
)

// pct builds a level of 100 hosts with the given percentage healthy, as
// Envoy's documentation states its examples.
func pct(healthy ...int) []priority.LevelHealth {
	out := make([]priority.LevelHealth, len(healthy))
	for i, h := range healthy {
		out[i] = priority.LevelHealth{Healthy: h, Total: 100}
	}
	return out
}

// The worked examples of Envoy's "Priority levels" page (two and three
// levels, with and without normalization). That page leaves panic mode
// out, so these run with it disabled; TestPriorityLoadPanic covers it.
func TestPriorityLoadEnvoyDocExamples(t *testing.T) {
	cases := []struct {
		healthy []int
		want    []uint32
	}{
		// Two levels, P=1 100% healthy.
		{[]int{100, 100}, []uint32{100, 0}},
		{[]int{72, 100}, []uint32{100, 0}},
		{[]int{71, 100}, []uint32{99, 1}},
		{[]int{50, 100}, []uint32{70, 30}},
		{[]int{25, 100}, []uint32{35, 65}},
		{[]int{0, 100}, []uint32{0, 100}},
		// Two levels, normalized when the total health is below 100.
		{[]int{72, 72}, []uint32{100, 0}},
		{[]int{71, 71}, []uint32{99, 1}},
		{[]int{50, 50}, []uint32{70, 30}},
		{[]int{25, 25}, []uint32{50, 50}},
		// Three levels.
		{[]int{100, 100, 100}, []uint32{100, 0, 0}},
		{[]int{72, 72, 100}, []uint32{100, 0, 0}},
		{[]int{71, 71, 100}, []uint32{99, 1, 0}},
		{[]int{50, 50, 100}, []uint32{70, 30, 0}},
		{[]int{25, 100, 100}, []uint32{35, 65, 0}},
		{[]int{25, 25, 100}, []uint32{35, 35, 30}},
		// The page shows 36/36/28 here, the exact shares rounded for
		// reading; Envoy's code (integer division, the rounding rest to the
		// first healthy priority) gives 37/35/28, and Meridian must match
		// the code, not the prose.
		{[]int{25, 25, 20}, []uint32{37, 35, 28}},
	}
	for _, c := range cases {
		got := priority.PriorityLoad(pct(c.healthy...), priority.LoadOptions{DisablePanic: true})
		if !slices.Equal(got.Healthy, c.want) {
			t.Errorf("health %v: load %v, want %v", c.healthy, got.Healthy, c.want)
		}
	}
	// The normalization example in prose: health scores {20, 30} (hosts
	// 1/7 and 3/14 healthy with factor 1.4 → 20 and 30) give {40, 60}.
	got := priority.PriorityLoad([]priority.LevelHealth{{Healthy: 1, Total: 7}, {Healthy: 3, Total: 14}}, priority.LoadOptions{DisablePanic: true})
	if !slices.Equal(got.Healthy, []uint32{40, 60}) {
		t.Errorf("health {20,30}: load %v, want [40 60]", got.Healthy)
	}
}

// The "Panic threshold" page: below a normalized total of 100, levels under
// 50% healthy panic; when all do, load follows host counts.
func TestPriorityLoadPanic(t *testing.T) {
	cases := []struct {
		healthy   []int
		wantLoad  []uint32
		wantPanic []bool
	}{
		{[]int{72, 100}, []uint32{100, 0}, []bool{false, false}},
		{[]int{25, 100}, []uint32{35, 65}, []bool{false, false}}, // total 100: nobody panics
		{[]int{25, 25}, []uint32{50, 50}, []bool{true, true}},    // total 70: both panic
		// Total 98: only P0 panics. The page shows 7/93; Envoy's code gives
		// P0 7 and P1 min(93, 91×100/98) = 92, and the rest of 1 goes to
		// the first healthy priority: 8/92.
		{[]int{5, 65}, []uint32{8, 92}, []bool{true, false}},
		// With the default panic threshold, 25/25/20 is a total panic:
		// every level is under 50% healthy, so load follows host counts.
		{[]int{25, 25, 20}, []uint32{34, 33, 33}, []bool{true, true, true}},
		{[]int{0, 0}, []uint32{50, 50}, []bool{true, true}}, // nothing healthy: by host count
	}
	for _, c := range cases {
		got := priority.PriorityLoad(pct(c.healthy...), priority.LoadOptions{})
		if !slices.Equal(got.Healthy, c.wantLoad) || !slices.Equal(got.Panic, c.wantPanic) {
			t.Errorf("health %v: load %v panic %v, want %v %v", c.healthy, got.Healthy, got.Panic, c.wantLoad, c.wantPanic)
		}
	}
	// Panic disabled and nothing healthy: P0 nominally takes everything.
	got := priority.PriorityLoad(pct(0, 0), priority.LoadOptions{DisablePanic: true})
	if !slices.Equal(got.Healthy, []uint32{100, 0}) || slices.Contains(got.Panic, true) {
		t.Errorf("no panic, nothing healthy: %+v", got)
	}
	// Total panic with uneven host counts: 1 of 3 and 2 of 6 → by hosts 33/67 (+1 rest to P0).
	got = priority.PriorityLoad([]priority.LevelHealth{{Healthy: 1, Total: 3}, {Healthy: 2, Total: 6}}, priority.LoadOptions{})
	if !slices.Equal(got.Healthy, []uint32{34, 66}) {
		t.Errorf("total panic by hosts: %v, want [34 66]", got.Healthy)
	}
}

// Envoy's own comment example: health 10/20/10 and degraded 20/10/0 give
// 16/28/14 healthy (the first healthy priority takes a rounding rest of 2)
// and 28/14/0 degraded.
func TestPriorityLoadDegraded(t *testing.T) {
	levels := []priority.LevelHealth{
		{Healthy: 10, Degraded: 20, Total: 140},
		{Healthy: 20, Degraded: 10, Total: 140},
		{Healthy: 10, Degraded: 0, Total: 140},
	}
	got := priority.PriorityLoad(levels, priority.LoadOptions{DisablePanic: true})
	if !slices.Equal(got.Healthy, []uint32{16, 28, 14}) || !slices.Equal(got.Degraded, []uint32{28, 14, 0}) {
		t.Errorf("degraded: healthy %v degraded %v, want [16 28 14] [28 14 0]", got.Healthy, got.Degraded)
	}
}

// Property: whatever the levels, the loads sum to exactly 100.
func TestPriorityLoadSumsTo100(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 1 + rng.IntN(6)
		levels := make([]priority.LevelHealth, n)
		for i := range levels {
			total := rng.IntN(12)
			h := 0
			if total > 0 {
				h = rng.IntN(total + 1)
			}
			d := 0
			if total-h > 0 {
				d = rng.IntN(total - h + 1)
			}
			levels[i] = priority.LevelHealth{Healthy: h, Degraded: d, Total: total}
		}
		opts := priority.LoadOptions{DisablePanic: rng.IntN(2) == 0, OverprovisioningFactor: uint32(100 + rng.IntN(100))}
		l := priority.PriorityLoad(levels, opts)
		var sum uint32
		for p := range levels {
			sum += l.Total(p)
		}
		if sum != 100 {
			t.Fatalf("levels %+v opts %+v: load %+v sums to %d", levels, opts, l, sum)
		}
	}
}

// A locality's weight scales with its availability under the
// overprovisioning factor, capped at its full weight; factor 0 (a level in
// panic) does not scale.
func TestLocalityWeight(t *testing.T) {
	cases := []struct {
		weight           float64
		available, hosts int
		factor           uint32
		want             float64
	}{
		{10, 10, 10, 140, 10},
		{10, 8, 10, 140, 10}, // 1.4 × 0.8 ≥ 1: full weight
		{10, 5, 10, 140, 7},  // 1.4 × 0.5
		{10, 0, 10, 140, 0},  // nothing available
		{10, 5, 10, 100, 5},  // no overprovisioning
		{10, 0, 10, 0, 10},   // panic: all hosts
		{10, 0, 0, 140, 10},  // no hosts: weight as given
		{3, 1, 4, 200, 1.5},  // 2 × 1/4
	}
	for _, c := range cases {
		if got := priority.LocalityWeight(c.weight, c.available, c.hosts, c.factor); got != c.want {
			t.Errorf("LocalityWeight(%v, %d, %d, %d) = %v, want %v", c.weight, c.available, c.hosts, c.factor, got, c.want)
		}
	}
}
