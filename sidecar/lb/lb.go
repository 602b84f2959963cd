package lb

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/locality/priority"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Host is one endpoint. Its address, locality, priority and weights are
// fixed for its life; the balancer keeps the same Host across updates
// while they stay the same, so that active requests and outlier state
// carry over (a changed endpoint gets a new Host that inherits the outlier
// state).
type Host struct {
	// Addr is "ip:port", or "name:port" for endpoints published as DNS
	// names (resolved when dialed).
	Addr string
	// loc is shared by the hosts of one locality (a host is kept small:
	// a sidecar holds tens of thousands).
	loc      *xdsconfig.Locality
	Priority uint32
	Weight   uint32
	// lweight is the weight of the host's locality (0: unset).
	lweight uint32

	// health is the EDS health (an xdsconfig.Health).
	health atomic.Uint32
	active atomic.Int64

	cons5xx, consGateway, consLocal atomic.Uint32
	ejected                         atomic.Bool
	// Under the balancer's lock.
	ejectedAt    time.Time
	numEjections uint32
}

func (h *Host) locWeight() uint32 { return h.lweight }

// Locality returns the host's locality; none for a host made outside a
// load assignment (an original-destination host).
func (h *Host) Locality() xdsconfig.Locality {
	if h.loc == nil {
		return xdsconfig.Locality{}
	}
	return *h.loc
}

// Begin and End bracket a request on the host (least request counts them).
func (h *Host) Begin() { h.active.Add(1) }

// End ends a request begun with Begin.
func (h *Host) End() { h.active.Add(-1) }

// Active returns the requests in flight on the host.
func (h *Host) Active() int64 { return h.active.Load() }

// Ejected reports whether outlier detection has ejected the host.
func (h *Host) Ejected() bool { return h.ejected.Load() }

// Health returns the host's EDS health.
func (h *Host) Health() xdsconfig.Health { return xdsconfig.Health(h.health.Load()) }

// healthy reports whether the host takes traffic outside panic mode.
func (h *Host) healthy() bool { return h.Health() == xdsconfig.Healthy && !h.ejected.Load() }

func (h *Host) degraded() bool { return h.Health() == xdsconfig.Degraded && !h.ejected.Load() }

// Config configures a Balancer: the cluster's settings.
type Config struct {
	Policy xdsconfig.LBPolicy
	// ChoiceCount is least request's number of candidates; default 2.
	ChoiceCount      int
	LocalityWeighted bool
	// PanicThreshold in percent; 0 disables panic mode.
	PanicThreshold uint32
	// Outlier enables outlier detection; nil disables it.
	Outlier *xdsconfig.Outlier
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnEject, when set, is told of every ejection and its end (from the
	// goroutine that caused it; it must not block).
	OnEject func(h *Host, ejected bool, reason string)
}

// Balancer picks hosts of one cluster. Safe for concurrent use.
type Balancer struct {
	mu       sync.Mutex
	cfg      Config
	hosts    []*Host
	overprov uint32
	drops    []xdsconfig.Drop
	p        atomic.Pointer[picker]
	// nextCheck is when outlier state next needs a sweep (unix nanos);
	// 0 when nothing is pending, so picks then never read the clock.
	nextCheck atomic.Int64
	lastSweep time.Time
}

// New returns a balancer without hosts.
func New(cfg Config) *Balancer {
	b := &Balancer{overprov: priority.DefaultOverprovisioningFactor}
	b.SetConfig(cfg)
	return b
}

// SetConfig replaces the cluster settings, keeping hosts and their state.
func (b *Balancer) SetConfig(cfg Config) {
	if cfg.ChoiceCount < 2 {
		cfg.ChoiceCount = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg = cfg
	if cfg.Outlier == nil {
		for _, h := range b.hosts {
			h.ejected.Store(false)
			h.numEjections = 0
		}
	}
	b.rebuild()
}

// Update replaces the endpoints. Hosts whose address stays keep their
// state. Nil endpoints remove every host.
func (b *Balancer) Update(eps *xdsconfig.Endpoints, addr func(xdsconfig.HostSpec) string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := make(map[string]*Host, len(b.hosts))
	for _, h := range b.hosts {
		old[h.Addr] = h
	}
	b.hosts = b.hosts[:0:0]
	b.overprov, b.drops = priority.DefaultOverprovisioningFactor, nil
	if eps != nil {
		b.overprov, b.drops = eps.OverprovisioningFactor, eps.Drops
		for _, l := range eps.Localities {
			var loc *xdsconfig.Locality // shared by this locality's new hosts
			for _, hs := range l.Hosts {
				a := addr(hs)
				h := old[a]
				delete(old, a) // an address listed twice keeps its first place
				if h == nil || h.Locality() != l.Locality || h.Priority != l.Priority || h.Weight != hs.Weight || h.lweight != l.Weight {
					if loc == nil {
						loc = new(xdsconfig.Locality)
						*loc = l.Locality
					}
					h = inherit(&Host{Addr: a, loc: loc, Priority: l.Priority, Weight: hs.Weight, lweight: l.Weight}, h)
				}
				h.health.Store(uint32(hs.Health))
				b.hosts = append(b.hosts, h)
			}
		}
	}
	b.rebuild()
}

// inherit carries an old host's outlier state to its replacement.
// Callers hold b.mu.
func inherit(h, old *Host) *Host {
	if old != nil {
		h.ejected.Store(old.ejected.Load())
		h.ejectedAt, h.numEjections = old.ejectedAt, old.numEjections
		h.cons5xx.Store(old.cons5xx.Load())
		h.consGateway.Store(old.consGateway.Load())
		h.consLocal.Store(old.consLocal.Load())
	}
	return h
}

// Hosts returns the current hosts, for the admin page and metrics.
func (b *Balancer) Hosts() []*Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.hosts)
}

// Drop applies the load assignment's drop_overloads: it returns the
// category of a request to drop, or "".
func (b *Balancer) Drop() string {
	p := b.p.Load()
	for _, d := range p.drops {
		if rand.Uint32N(1_000_000) < d.PerMillion {
			return d.Category
		}
	}
	return ""
}

// Load returns the current priority load, for tests and the admin page.
func (b *Balancer) Load() priority.Load { return b.p.Load().load }

// Pick returns a host, or nil when the cluster has none that EDS calls
// healthy or degraded. tried lists hosts a retry must avoid where it can.
//
// When every endpoint is UNHEALTHY or DRAINING in EDS, Envoy's total panic
// would still send to them and fail after a connect timeout or a reset;
// Pick returns nil so the request fails at once with "no healthy
// upstream" (UH), as Envoy does with panic disabled: the registry says
// unhealthy endpoints get no traffic, and a residency rule whose allowed
// endpoints are all down must fail fast rather than wait on them. Panic
// mode is otherwise Envoy's, including hosts that outlier detection
// ejected: ejection is this proxy's guess from a few errors, and ejecting
// a service's only endpoints must not turn into an outage.
func (b *Balancer) Pick(tried []*Host) *Host {
	b.maybeSweep()
	p := b.p.Load()
	if len(p.prios) == 0 || !p.available {
		return nil
	}
	if len(tried) > 0 {
		return b.pickExcluding(p, tried)
	}
	r := rand.Uint32N(100)
	for i := range p.prios {
		if r < p.load.Healthy[i] {
			if p.load.Panic[i] {
				return p.prios[i].all.pick(p.policy, p.choices)
			}
			return p.prios[i].healthy.pick(p.policy, p.choices)
		}
		r -= p.load.Healthy[i]
	}
	for i := range p.prios {
		if r < p.load.Degraded[i] {
			return p.prios[i].degraded.pick(p.policy, p.choices)
		}
		r -= p.load.Degraded[i]
	}
	// Rounding: the top priority's hosts, whatever their health.
	return p.prios[0].all.pick(p.policy, p.choices)
}

// pickExcluding is the retry path: tried hosts count as unhealthy for the
// priority load, and are avoided inside the priority when possible.
func (b *Balancer) pickExcluding(p *picker, tried []*Host) *Host {
	levels := make([]priority.LevelHealth, len(p.prios))
	for i := range p.prios {
		for _, h := range p.prios[i].all.hosts() {
			levels[i].Total++
			if slices.Contains(tried, h) {
				continue
			}
			if h.healthy() {
				levels[i].Healthy++
			} else if h.degraded() {
				levels[i].Degraded++
			}
		}
	}
	load := priority.PriorityLoad(levels, p.opts)
	r := rand.Uint32N(100)
	prio, panicMode := 0, false
	for i := range p.prios {
		if t := load.Total(i); r < t {
			prio, panicMode = i, load.Panic[i]
			break
		} else {
			r -= t
		}
	}
	var candidates []*Host
	for _, h := range p.prios[prio].all.hosts() {
		if !slices.Contains(tried, h) && (panicMode || h.healthy() || h.degraded()) {
			candidates = append(candidates, h)
		}
	}
	if len(candidates) == 0 {
		// Everything was tried: try anything serving again, else anything.
		for i := range p.prios {
			for _, h := range p.prios[i].all.hosts() {
				if h.healthy() {
					candidates = append(candidates, h)
				}
			}
		}
	}
	if len(candidates) == 0 {
		candidates = p.prios[0].all.hosts()
	}
	return pickAmong(candidates, p.policy, p.choices)
}

// pickAmong picks from an ad-hoc list: weighted random, or least request.
func pickAmong(hs []*Host, policy xdsconfig.LBPolicy, choices int) *Host {
	if len(hs) == 0 {
		return nil
	}
	if policy == xdsconfig.LBLeastRequest {
		return leastOf(hs, nil, choices)
	}
	var sum uint64
	for _, h := range hs {
		sum += uint64(h.Weight)
	}
	r := rand.Uint64N(max(sum, 1))
	for _, h := range hs {
		if r < uint64(h.Weight) {
			return h
		}
		r -= uint64(h.Weight)
	}
	return hs[len(hs)-1]
}

// rebuild publishes a new picker from the hosts' current health. Callers
// hold b.mu.
func (b *Balancer) rebuild() {
	b.p.Store(buildPicker(b.hosts, b.cfg, b.overprov, b.drops))
}
