package traffic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/lab/demopb"
)

// Bucket is the resolution of the generator's history.
const Bucket = 100 * time.Millisecond

// Target is one service the generator calls.
type Target struct {
	// Name labels the target in reports ("frontend").
	Name   string
	Client demopb.DemoClient
}

// Config configures a Generator. Targets is required.
type Config struct {
	// Caller names the generator in the requests it sends.
	Caller  string
	Targets []Target
	// Rate is calls per second to each target. Default 20.
	Rate float64
	// Timeout bounds each call. Default 1s.
	Timeout time.Duration
	// MaxInFlight bounds the calls in flight per target; a tick finding
	// the bound reached is counted as a failure ("overloaded"), so that a
	// hanging mesh shows as failures rather than as a lower rate.
	// Default 2·Rate·Timeout, at least 16.
	MaxInFlight int
	// History is how much the generator remembers. Default 15 minutes.
	History time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = max(16, int(2*c.Rate*c.Timeout.Seconds()))
	}
	if c.History <= 0 {
		c.History = 15 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Generator calls its targets at a steady rate and remembers the results
// in buckets of 100ms. Create it with New, run it with Run; reports may be
// taken at any time, from any goroutine.
type Generator struct {
	cfg Config

	mu      sync.Mutex
	origin  time.Time          // start of bucket 0
	first   int                // index of the oldest bucket kept
	history map[string][]*slot // by target; history[t][i] is bucket first+i
}

// slot is one bucket of one target.
type slot struct {
	ok, failed int
	errors     map[string]int // failure reason (gRPC code) → count
	lastError  string         // the message of the bucket's last failure
	served     map[string]int // serving cluster (first hop) → count
	paths      map[string]int // every hop, "svc vN@cluster/zone > ..." → count
}

// New validates cfg and returns a Generator.
func New(cfg Config) (*Generator, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("traffic: no targets")
	}
	seen := map[string]bool{}
	for _, t := range cfg.Targets {
		if t.Name == "" || t.Client == nil || seen[t.Name] {
			return nil, fmt.Errorf("traffic: target %q: needs a unique name and a client", t.Name)
		}
		seen[t.Name] = true
	}
	cfg = cfg.withDefaults()
	return &Generator{cfg: cfg, origin: cfg.Now().Truncate(Bucket), history: map[string][]*slot{}}, nil
}

// Run calls every target at the configured rate until ctx ends, then waits
// for the calls in flight (bounded by Timeout). It returns nil.
func (g *Generator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range g.cfg.Targets {
		wg.Go(func() { g.drive(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (g *Generator) drive(ctx context.Context, t Target) {
	var calls sync.WaitGroup
	defer calls.Wait()
	sem := make(chan struct{}, g.cfg.MaxInFlight)
	tick := time.NewTicker(time.Duration(float64(time.Second) / g.cfg.Rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := g.cfg.Now()
		select {
		case sem <- struct{}{}:
		default:
			g.record(t.Name, start, nil, errOverloaded)
			continue
		}
		calls.Go(func() {
			defer func() { <-sem }()
			// A call in flight when the generator stops still counts: it
			// gets its own deadline, not the generator's context.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Timeout)
			reply, err := t.Client.Call(cctx, &demopb.CallRequest{Caller: g.cfg.Caller})
			cancel()
			g.record(t.Name, start, reply, err)
		})
	}
}

var errOverloaded = errors.New("overloaded")

// reason names a failure in reports: the gRPC code, or "overloaded".
func reason(err error) string {
	if errors.Is(err, errOverloaded) {
		return "overloaded"
	}
	return status.Code(err).String()
}

// Path renders the hops of a reply: "frontend@eks-use1/use1-az1 >
// catalog v2@eks-use1/use1-az2 > ...".
func Path(hops []*demopb.Hop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		name := h.GetService()
		if h.GetVersion() != "" {
			name += " " + h.GetVersion()
		}
		parts[i] = name + "@" + h.GetCluster() + "/" + h.GetZone()
	}
	return strings.Join(parts, " > ")
}

func (g *Generator) record(target string, start time.Time, reply *demopb.CallReply, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.slotAt(target, start)
	if s == nil {
		return
	}
	if err != nil {
		s.failed++
		inc(&s.errors, reason(err))
		s.lastError = err.Error()
		if st, ok := status.FromError(err); ok {
			s.lastError = st.Message()
		}
		return
	}
	s.ok++
	if hops := reply.GetHops(); len(hops) > 0 {
		inc(&s.served, hops[0].GetCluster())
		inc(&s.paths, Path(hops))
	}
}

func inc(m *map[string]int, k string) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}

// slotAt returns the bucket of t, growing the history and forgetting what
// is older than History; nil for a time already forgotten.
func (g *Generator) slotAt(target string, t time.Time) *slot {
	idx := int(t.Sub(g.origin) / Bucket)
	if idx < g.first {
		return nil
	}
	if keep := int(g.cfg.History / Bucket); idx-g.first >= keep {
		drop := idx - g.first - keep + 1
		for name, h := range g.history {
			g.history[name] = h[min(drop, len(h)):]
		}
		g.first += drop
	}
	h := g.history[target]
	for len(h) <= idx-g.first {
		h = append(h, &slot{})
	}
	g.history[target] = h
	return h[idx-g.first]
}
