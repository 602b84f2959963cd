package lb

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/locality/priority"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// maxSchedule bounds a weighted round-robin schedule; weights are scaled
// down to fit, which costs at most a fraction of a percent of accuracy.
const maxSchedule = 4096

// picker is an immutable view of a cluster's hosts and health, built on
// every change and shared by every request until the next.
type picker struct {
	// The cluster settings requests read, copied so that SetConfig never
	// races with a pick.
	policy  xdsconfig.LBPolicy
	choices int
	outlier *xdsconfig.Outlier
	now     func() time.Time

	load priority.Load
	opts priority.LoadOptions
	// available: some host is HEALTHY or DEGRADED in EDS (ejected or
	// not). When none is, picks fail (no healthy upstream) instead of
	// Envoy's total panic.
	available bool
	prios     []*prioSet
	drops     []xdsconfig.Drop
}

type prioSet struct {
	healthy, degraded, all *hostSet
}

// hostSet is the hosts one pick chooses from: by locality first when the
// cluster is locality-weighted, else all together.
type hostSet struct {
	locs  []*localitySet
	sched schedule // over locs; empty when there is one locality
}

type localitySet struct {
	hs    []*Host
	sched schedule // over hs, by weight; empty when weights are equal
}

// schedule is a weighted round robin: a smooth interleaving of indexes,
// walked by an atomic counter (nil where there is one choice).
type schedule struct {
	seq []uint16
	ctr *atomic.Uint64
}

func (s schedule) next(n int) int {
	if len(s.seq) == 0 {
		if n == 1 {
			return 0
		}
		return int(s.ctr.Add(1) % uint64(n))
	}
	return int(s.seq[s.ctr.Add(1)%uint64(len(s.seq))])
}

func (s *hostSet) hosts() []*Host {
	var out []*Host
	for _, l := range s.locs {
		out = append(out, l.hs...)
	}
	return out
}

func (s *hostSet) pick(policy xdsconfig.LBPolicy, choices int) *Host {
	if len(s.locs) == 0 {
		return nil
	}
	l := s.locs[0]
	if len(s.locs) > 1 {
		l = s.locs[s.sched.next(len(s.locs))]
	}
	switch policy {
	case xdsconfig.LBLeastRequest:
		return leastOf(l.hs, l.sched.seq, choices)
	case xdsconfig.LBRandom:
		if len(l.sched.seq) > 0 {
			return l.hs[l.sched.seq[rand.IntN(len(l.sched.seq))]]
		}
		return l.hs[rand.IntN(len(l.hs))]
	default:
		return l.hs[l.sched.next(len(l.hs))]
	}
}

// leastOf is least request with the power of N choices: N random
// candidates (drawn by weight when weights differ), the one with the
// fewest requests in flight relative to its weight wins.
func leastOf(hs []*Host, weighted []uint16, choices int) *Host {
	if len(hs) == 1 {
		return hs[0]
	}
	var best *Host
	bestScore := math.Inf(1)
	for range choices {
		var h *Host
		if len(weighted) > 0 {
			h = hs[weighted[rand.IntN(len(weighted))]]
		} else {
			h = hs[rand.IntN(len(hs))]
		}
		score := float64(h.Active()+1) / float64(max(h.Weight, 1))
		if score < bestScore {
			best, bestScore = h, score
		}
	}
	return best
}

func buildPicker(hosts []*Host, cfg Config, overprov uint32, drops []xdsconfig.Drop) *picker {
	p := &picker{policy: cfg.Policy, choices: cfg.ChoiceCount, outlier: cfg.Outlier, now: cfg.Now, drops: drops, opts: priority.LoadOptions{OverprovisioningFactor: overprov, PanicThreshold: cfg.PanicThreshold, DisablePanic: cfg.PanicThreshold == 0}}
	if len(hosts) == 0 {
		return p
	}
	maxPrio := uint32(0)
	for _, h := range hosts {
		maxPrio = max(maxPrio, h.Priority)
	}
	byPrio := make([][]*Host, maxPrio+1)
	for _, h := range hosts {
		byPrio[h.Priority] = append(byPrio[h.Priority], h)
	}
	levels := make([]priority.LevelHealth, len(byPrio))
	for i, hs := range byPrio {
		for _, h := range hs {
			levels[i].Total++
			hl := h.Health()
			p.available = p.available || hl == xdsconfig.Healthy || hl == xdsconfig.Degraded
			if h.healthy() {
				levels[i].Healthy++
			} else if h.degraded() {
				levels[i].Degraded++
			}
		}
	}
	p.load = priority.PriorityLoad(levels, p.opts)
	for i, hs := range byPrio {
		ps := &prioSet{healthy: noHosts, degraded: noHosts}
		if levels[i].Healthy > 0 {
			ps.healthy = newHostSet(hs, (*Host).healthy, cfg.LocalityWeighted, overprov)
		}
		if levels[i].Degraded > 0 {
			ps.degraded = newHostSet(hs, (*Host).degraded, cfg.LocalityWeighted, overprov)
		}
		// Usually every host is healthy: the panic set is then the healthy
		// set (availability scaling is 1 for every locality), and one set
		// serves both, as a sidecar holds thousands of these.
		if levels[i].Healthy == len(hs) && overprov >= 100 {
			ps.all = ps.healthy
		} else {
			ps.all = newHostSet(hs, func(*Host) bool { return true }, cfg.LocalityWeighted, 0)
		}
		p.prios = append(p.prios, ps)
	}
	return p
}

// noHosts is the empty set, shared.
var noHosts = &hostSet{}

// newHostSet groups the hosts that pass keep. With locality weighting,
// each locality's weight is scaled by its availability, as Envoy scales it
// (priority.LocalityWeight; factor in percent, 0: no scaling, the panic
// set).
func newHostSet(all []*Host, keep func(*Host) bool, localityWeighted bool, factor uint32) *hostSet {
	s := &hostSet{}
	if !localityWeighted {
		n := 0
		for _, h := range all {
			if keep(h) {
				n++
			}
		}
		if n > 0 {
			hs := make([]*Host, 0, n)
			for _, h := range all {
				if keep(h) {
					hs = append(hs, h)
				}
			}
			s.locs = []*localitySet{newLocalitySet(hs)}
		}
		return s
	}
	type group struct {
		loc          xdsconfig.Locality
		kept, total  int
		hs           []*Host
		firstAtIndex int
	}
	groups := map[xdsconfig.Locality]*group{}
	var order []*group
	for i, h := range all {
		g := groups[h.Locality()]
		if g == nil {
			g = &group{loc: h.Locality(), firstAtIndex: i}
			groups[h.Locality()] = g
			order = append(order, g)
		}
		g.total++
		if keep(h) {
			g.kept++
			g.hs = append(g.hs, h)
		}
	}
	weights := make([]float64, 0, len(order))
	for _, g := range order {
		if g.kept == 0 {
			continue
		}
		w := priority.LocalityWeight(float64(localityWeight(g.hs)), g.kept, g.total, factor)
		if w <= 0 {
			continue
		}
		s.locs = append(s.locs, newLocalitySet(g.hs))
		weights = append(weights, w)
	}
	if len(s.locs) > 1 {
		s.sched = schedule{seq: smooth(weights), ctr: new(atomic.Uint64)}
	}
	return s
}

// localityWeight is the locality's weight from EDS, carried on its hosts
// (see Balancer.Update); 1 when unset.
func localityWeight(hs []*Host) uint32 {
	return max(1, hs[0].locWeight())
}

func newLocalitySet(hs []*Host) *localitySet {
	l := &localitySet{hs: hs}
	if len(hs) == 1 {
		return l // nothing to schedule
	}
	l.sched.ctr = new(atomic.Uint64)
	equal := true
	for _, h := range hs[1:] {
		equal = equal && h.Weight == hs[0].Weight
	}
	if !equal {
		ws := make([]float64, len(hs))
		for i, h := range hs {
			ws[i] = float64(max(h.Weight, 1))
		}
		l.sched.seq = smooth(ws)
	}
	// Start each set at a random place, so that many proxies that got the
	// same update do not all send their first request to the same host.
	l.sched.ctr.Store(rand.Uint64())
	return l
}

// smooth builds a smooth weighted round-robin sequence (nginx's
// algorithm) over the given weights, scaled to at most maxSchedule slots.
func smooth(weights []float64) []uint16 {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	// Integer weights that fit are used as they are (exact); others are
	// scaled to the full schedule for resolution, and the gcd below brings
	// simple ratios back to short sequences.
	scale := 1.0
	for _, w := range weights {
		if w != math.Trunc(w) || total > maxSchedule {
			scale = maxSchedule / total
			break
		}
	}
	// Integer weights keep the sequence exact; tiny weights keep one slot.
	iw := make([]int, len(weights))
	sum := 0
	for i, w := range weights {
		iw[i] = max(1, int(math.Round(w*scale)))
		sum += iw[i]
	}
	if g := gcdAll(iw); g > 1 {
		sum = 0
		for i := range iw {
			iw[i] /= g
			sum += iw[i]
		}
	}
	seq := make([]uint16, 0, sum)
	cur := make([]int, len(iw))
	for range sum {
		best := 0
		for i := range iw {
			cur[i] += iw[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		seq = append(seq, uint16(best))
	}
	return seq
}

func gcdAll(v []int) int {
	g := 0
	for _, x := range v {
		for x != 0 {
			g, x = x, g%x
		}
	}
	return g
}
