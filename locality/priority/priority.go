package priority

// Envoy's priority load, computed exactly as Envoy does (see its docs,
// "Priority levels" and "Panic threshold"), so that meridian-proxy,
// drills and explain agree with Envoy under the same assignment:
//
//	health(P)     = min(100, factor × healthy(P) / hosts(P))     integer division
//	degraded(P)   = min(100, factor × degraded(P) / hosts(P))
//	availability  = min(100, Σ health + Σ degraded)               "normalized total"
//	load(P)       = min(left, health(P) × 100 / availability)     top priority first
//	then the degraded loads from what is left; a rounding rest goes to the
//	first priority with healthy hosts (else the first with degraded ones).
//
// Panic: while availability is 100, no priority panics. Below it, a
// priority whose healthy+degraded share is under the panic threshold (50%)
// panics (its proxies then use all its hosts); when every priority panics,
// load follows the host counts instead. With availability 0 and panic
// disabled, P0 takes the load (and requests fail: no healthy host).

// DefaultOverprovisioningFactor is Envoy's, in percent.
const DefaultOverprovisioningFactor = 140

// DefaultPanicThreshold is Envoy's, in percent.
const DefaultPanicThreshold = 50

// LevelHealth counts one priority level's hosts.
type LevelHealth struct {
	Healthy, Degraded, Total int
}

// LoadOptions tune PriorityLoad; the zero value is Envoy's defaults.
type LoadOptions struct {
	// OverprovisioningFactor in percent; 0 means 140.
	OverprovisioningFactor uint32
	// PanicThreshold in percent; 0 means 50. DisablePanic turns panic mode
	// off (Envoy's threshold 0).
	PanicThreshold uint32
	DisablePanic   bool
}

// Factor is the overprovisioning factor in percent, defaulted.
func (o LoadOptions) Factor() uint32 {
	if o.OverprovisioningFactor == 0 {
		return DefaultOverprovisioningFactor
	}
	return o.OverprovisioningFactor
}

// Load is the share of requests, in percent, each priority receives:
// Healthy[p] go to its healthy hosts, Degraded[p] to its degraded ones;
// together they sum to 100. Panic[p] says the priority's proxies ignore
// health and use all its hosts.
type Load struct {
	Healthy  []uint32 `json:"healthy"`
	Degraded []uint32 `json:"degraded"`
	Panic    []bool   `json:"panic"`
}

// Total returns the load of priority p, healthy and degraded.
func (l Load) Total(p int) uint32 { return l.Healthy[p] + l.Degraded[p] }

// PriorityLoad computes Envoy's per-priority load from the health of each
// level.
func PriorityLoad(levels []LevelHealth, opts LoadOptions) Load {
	factor := uint64(opts.Factor())
	threshold := float64(opts.PanicThreshold)
	if threshold == 0 {
		threshold = DefaultPanicThreshold
	}
	if opts.DisablePanic {
		threshold = 0
	}
	n := len(levels)
	l := Load{Healthy: make([]uint32, n), Degraded: make([]uint32, n), Panic: make([]bool, n)}
	if n == 0 {
		return l
	}
	health := make([]uint32, n)
	degraded := make([]uint32, n)
	var sum uint64
	for i, lv := range levels {
		if lv.Total > 0 {
			health[i] = uint32(min(100, factor*uint64(lv.Healthy)/uint64(lv.Total)))
			degraded[i] = uint32(min(100, factor*uint64(lv.Degraded)/uint64(lv.Total)))
		}
		sum += uint64(health[i]) + uint64(degraded[i])
	}
	avail := uint32(min(100, sum))

	if avail > 0 {
		firstHealthy, left := distribute(l.Healthy, health, 100, avail)
		firstDegraded, left := distribute(l.Degraded, degraded, left, avail)
		if left > 0 {
			if firstHealthy >= 0 {
				l.Healthy[firstHealthy] += left
			} else {
				l.Degraded[firstDegraded] += left
			}
		}
	}
	if threshold == 0 {
		if avail == 0 {
			l.Healthy[0] = 100
		}
		return l
	}
	total := true
	for i, lv := range levels {
		if avail < 100 {
			share := 0.0
			if lv.Total > 0 {
				share = 100*float64(lv.Healthy)/float64(lv.Total) + 100*float64(lv.Degraded)/float64(lv.Total)
			}
			l.Panic[i] = share < threshold
		}
		total = total && l.Panic[i]
	}
	if total {
		loadByHosts(l, levels)
	}
	return l
}

// distribute gives each level its share of load, top priority first, and
// returns the first level with any availability and the load left.
func distribute(out, avail []uint32, load, total uint32) (first int, left uint32) {
	first = -1
	for i, a := range avail {
		if first < 0 && a > 0 {
			first = i
		}
		out[i] = min(load, a*100/total)
		load -= out[i]
	}
	return first, load
}

// loadByHosts is the total-panic load: by host counts, ignoring health.
func loadByHosts(l Load, levels []LevelHealth) {
	hosts := 0
	for _, lv := range levels {
		hosts += lv.Total
	}
	clear(l.Degraded)
	if hosts == 0 {
		clear(l.Healthy)
		l.Healthy[0] = 100
		return
	}
	left := uint32(100)
	first := -1
	for i, lv := range levels {
		if first < 0 && lv.Total > 0 {
			first = i
		}
		l.Healthy[i] = uint32(100 * lv.Total / hosts)
		left -= l.Healthy[i]
	}
	l.Healthy[first] += left
}

// LocalityWeight is a locality's effective weight inside its priority under
// Envoy's locality-weighted load balancing: its weight scaled by its
// availability, weight × min(1, factor × available / hosts), factor in
// percent. Factor 0 does not scale (a priority in panic uses all its
// hosts); a locality without hosts keeps its weight.
func LocalityWeight(weight float64, available, hosts int, factor uint32) float64 {
	if factor == 0 || hosts == 0 {
		return weight
	}
	return weight * min(1, float64(factor)/100*float64(available)/float64(hosts))
}
