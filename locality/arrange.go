package locality

import (
	"fmt"
	"slices"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// Reasons of the default order and weights.
var (
	whyOwnZone      = Reason{Rule: "the client's own zone"}
	whyOwnRegion    = Reason{Rule: "the client's own region, other zones"}
	whyOtherRegions = Reason{Rule: "other regions"}
	whyWeights      = Reason{Rule: "sum of the locality's endpoint weights"}
)

// distributeRank puts the targets of a distribute rule ahead of every
// failover level.
const distributeRank = -1

// arrange orders a service's allowed endpoints into priority levels for
// one client. Every group gets a rank; levels are the distinct ranks in
// order, so priorities run from 0 without gaps.
func (e *Engine) arrange(st *serviceState, c Client) Assignment {
	a := Assignment{
		Service: st.key, Client: c, Blocked: st.blocked, Audited: st.audited,
		OutlierDetection: st.od, OutlierDetectionReason: st.odWhy,
	}
	f := st.failover
	if f != nil {
		a.Failover = f.name
	}
	if len(st.groups) == 0 {
		return a
	}
	dist := -1
	if f != nil {
		dist = f.distributeFor(c.Locality)
	}
	// Scratch space on the stack for the usual sizes.
	var rankBuf, targetBuf [64]int
	ranks, target := rankBuf[:0], targetBuf[:0] // target: distribute target of each group, for rank -1
	var distinctBuf [8]int
	distinct := distinctBuf[:0]
	for i := range st.groups {
		g := &st.groups[i]
		r, t := -2, 0
		if dist >= 0 {
			if j := bestTarget(f.obj.Spec.Distribute[dist].To, g.locality); j >= 0 {
				r, t = distributeRank, j
			}
		}
		if r == -2 {
			r = rankOf(f, c, g)
		}
		ranks, target = append(ranks, r), append(target, t)
		if !slices.Contains(distinct, r) {
			distinct = append(distinct, r)
		}
	}
	slices.Sort(distinct)
	// One backing array for every level's localities: an assignment is a
	// handful of allocations whatever its size.
	les := make([]LocalityEndpoints, 0, len(st.groups))
	a.Levels = make([]Level, 0, len(distinct))
	for _, r := range distinct {
		lvl := Level{Reason: rankReason(f, c, r, dist)}
		var targetSum []uint64
		if r == distributeRank {
			targetSum = make([]uint64, len(f.obj.Spec.Distribute[dist].To))
			for i := range st.groups {
				if ranks[i] == r {
					targetSum[target[i]] += uint64(st.groups[i].weight)
				}
			}
		}
		first := len(les)
		for i := range st.groups {
			if ranks[i] != r {
				continue
			}
			g := &st.groups[i]
			w, why := uint64(g.weight), &whyWeights
			if r == distributeRank {
				// The target's percentage, shared by its localities in
				// proportion to their endpoint weights; scaled so that
				// small shares stay above zero.
				t := f.obj.Spec.Distribute[dist].To[target[i]]
				w = max(1, uint64(t.Weight)*1000*uint64(g.weight)/targetSum[target[i]])
				why = &f.distTargetWhy[dist][target[i]]
			}
			if n := len(les); n > first && les[n-1].Locality == g.locality {
				// Same locality from another cluster: one locality per
				// level, as Envoy requires.
				le := &les[n-1]
				le.Endpoints = append(slices.Clip(le.Endpoints), g.eps...)
				le.Weight = uint32(min(uint64(le.Weight)+w, 1<<31))
				continue
			}
			les = append(les, LocalityEndpoints{
				Locality: g.locality, Weight: uint32(min(w, 1<<31)), WeightReason: why, Endpoints: g.eps,
			})
		}
		lvl.Localities = les[first:len(les):len(les)]
		a.Levels = append(a.Levels, lvl)
	}
	return a
}

// bestTarget returns the most specific distribute target covering a
// locality, or -1.
func bestTarget(ts []v1alpha1.DistributeTarget, l registry.Locality) int {
	best, bestSpec := -1, -1
	for i, t := range ts {
		if t.Locality.Matches(l) && t.Locality.Specificity() > bestSpec {
			best, bestSpec = i, t.Locality.Specificity()
		}
	}
	return best
}

// rankOf places a group for a client: by the failover policy's label
// order, by its region order, or by the default order.
func rankOf(f *failoverPolicy, c Client, g *group) int {
	if f != nil && len(f.labels) > 0 {
		cp := place{locality: c.Locality, cluster: c.Cluster, network: c.Network, labels: c.Labels}
		matched := 0
		for _, l := range f.labels {
			cv, gv := cp.value(l), g.value(l)
			if cv == "" || cv != gv {
				break
			}
			matched++
		}
		return len(f.labels) - matched
	}
	switch {
	case c.Locality.Region == g.locality.Region && c.Locality.Zone == g.locality.Zone:
		return 0
	case c.Locality.Region == g.locality.Region:
		return 1
	}
	if f != nil {
		if ro := f.regions[c.Locality.Region]; ro != nil {
			if i := slices.Index(ro.to, g.locality.Region); i >= 0 {
				return 2 + i
			}
			return 2 + len(ro.to)
		}
	}
	return 2
}

func rankReason(f *failoverPolicy, c Client, r, dist int) Reason {
	switch {
	case r == distributeRank:
		return f.distWhy[dist]
	case f != nil && len(f.labels) > 0:
		return f.levelWhy[r]
	case r == 0:
		return whyOwnZone
	case r == 1:
		return whyOwnRegion
	}
	if f != nil {
		if ro := f.regions[c.Locality.Region]; ro != nil {
			if r-2 < len(ro.to) {
				return ro.why[r-2]
			}
			return ro.otherWhy
		}
	}
	return whyOtherRegions
}

// place is where a client or a group of endpoints is, as failover
// priority labels read it.
type place struct {
	locality registry.Locality
	cluster  string
	network  string
	labels   map[string]string // the cluster's
}

// value returns a place's value for a canonical failover-priority label.
func (p *place) value(label string) string {
	switch label {
	case "region":
		return p.locality.Region
	case "zone":
		return p.locality.Zone
	case "subzone":
		return p.locality.Subzone
	case "cluster":
		return p.cluster
	case "network":
		return p.network
	}
	return p.labels[label]
}

func distributeReasons(f *failoverPolicy) {
	for i, d := range f.obj.Spec.Distribute {
		f.distWhy = append(f.distWhy, Reason{
			Rule:   "distribute rule for clients in " + string(d.From),
			Policy: f.name, Field: fmt.Sprintf("spec.distribute[%d]", i),
		})
		var ws []Reason
		for j, t := range d.To {
			ws = append(ws, Reason{
				Rule:   fmt.Sprintf("distribute %d%% to %s", t.Weight, t.Locality),
				Policy: f.name, Field: fmt.Sprintf("spec.distribute[%d].to[%d]", i, j),
			})
		}
		f.distTargetWhy = append(f.distTargetWhy, ws)
	}
}
