package policyapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// Store is what the policy API needs of the mesh's replicated policy
// store; *policy.Store (federation's, or one opened in memory) satisfies
// it. Its methods are safe for concurrent use.
type Store interface {
	Snapshot() *policy.Snapshot
	Put(ctx context.Context, k policy.Key, spec []byte) (*policy.Resource, error)
	Delete(ctx context.Context, k policy.Key) (*policy.Resource, error)
	Subscribe() *policy.Subscription
}

// Defaults of Config.
const (
	DefaultDrillLeaseTTL    = 10 * time.Second
	DefaultMaxDrillDuration = time.Hour
	DefaultProgressInterval = time.Second
)

// Config configures a Server. Cluster, Registry, Policies and Etcd are
// required.
type Config struct {
	// Cluster is this control plane's cluster: live drills started here
	// hold their lease in its etcd.
	Cluster string
	// Registry is the global registry: admission checks policies against
	// it, explain and drills compute over its view.
	Registry *registry.Registry
	// Policies is the mesh's replicated policy store.
	Policies Store
	// Etcd is this cluster's etcd, where live drills keep their leases
	// (under /meridian/drills/).
	Etcd *store.Store
	// Apply receives every new compiled policy set, drills' drains
	// included: meridiand passes the xDS server's SetCompiledPolicies. It
	// is called from Run's goroutine and must not block. Nil: nothing is
	// pushed (explain and drills still work).
	Apply func(*translate.Policies)
	// DrillLeaseTTL is how long a live drill outlives its client's last
	// heartbeat. Default DefaultDrillLeaseTTL (10s); etcd's minimum is 2s.
	DrillLeaseTTL time.Duration
	// MaxDrillDuration bounds a live drill. Default 1h.
	MaxDrillDuration time.Duration
	// ProgressInterval is how often a live drill reports where traffic
	// goes. Default 1s.
	ProgressInterval time.Duration
	// Logger; default slog.Default(). The server adds component=policyapi.
	Logger *slog.Logger
	// Metrics registers the server's metrics; default a private registry.
	Metrics prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.DrillLeaseTTL <= 0 {
		c.DrillLeaseTTL = DefaultDrillLeaseTTL
	}
	c.DrillLeaseTTL = max(c.DrillLeaseTTL, 2*time.Second).Round(time.Second)
	if c.MaxDrillDuration <= 0 {
		c.MaxDrillDuration = DefaultMaxDrillDuration
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return c
}

// Server is the policy API and the policy pipeline of one control plane:
// it admits and stores policies, follows the store, compiles the policies
// and the live drills into the engine the xDS server pushes, and answers
// explain and drill requests with that same engine.
type Server struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	dec     decoder
	state   atomic.Pointer[state]
	writeMu sync.Mutex // serializes admission and writes in this process
	running atomic.Bool
	// kubeSynced: RunKube read every kind once.
	kubeSynced atomic.Bool
}

// state is one compiled policy set: immutable, replaced as a whole.
type state struct {
	// version is the policy store snapshot's it was compiled from.
	version uint64
	objs    []v1alpha1.Object
	drills  []drill
	drains  []locality.Target
	base    *translate.Policies // without drains
	pol     *translate.Policies // in force: base with drains
	// replaced is closed when a newer state replaces this one.
	replaced chan struct{}
}

// New validates the config and builds a Server. Call Register to serve
// the API and Run to follow the store.
func New(cfg Config) (*Server, error) {
	if cfg.Cluster == "" || cfg.Registry == nil || cfg.Policies == nil || cfg.Etcd == nil {
		return nil, errors.New("policyapi: Config needs Cluster, Registry, Policies and Etcd")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "policyapi"), dec: decoder{cache: map[policy.Key]decoded{}}}
	m, err := newMetrics(cfg.Metrics, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Register adds the PolicyService and the LocalityService to a gRPC
// server (meridiand's shared one).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	policyapipb.RegisterPolicyServiceServer(g, &policyService{s: s})
	policyapipb.RegisterLocalityServiceServer(g, &localityService{s: s})
}

// Ready reports an error until the policies in the store were compiled
// once: before that, proxies would get no policies at all.
func (s *Server) Ready(context.Context) error {
	if s.state.Load() == nil {
		return errors.New("policies not compiled yet")
	}
	return nil
}

// Engine returns the locality engine in force: the one handed to Apply
// last, drills' drains included.
func (s *Server) Engine() *locality.Engine { return s.current().pol.Engine() }

func (s *Server) current() *state {
	if st := s.state.Load(); st != nil {
		return st
	}
	return &state{}
}

// Run follows the policy store until ctx ends: it compiles every change
// (and every drill's start and end) into a new policy set and hands it to
// Apply, and ends the drills whose lease ran out. It returns nil when ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("policyapi: Run called twice")
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.follow(ctx) })
	g.Go(func() error { return s.reapDrills(ctx) })
	return g.Wait()
}

// follow compiles the store's policies on every change, and again when a
// drill's deadline passes.
func (s *Server) follow(ctx context.Context) error {
	sub := s.cfg.Policies.Subscribe()
	defer sub.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		policiesChanged := false
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Ready():
			_, d := sub.Take()
			if d.Full {
				policiesChanged = true
			}
			for k := range d.Keys {
				policiesChanged = policiesChanged || k.Kind != drillKind
			}
		case <-timer.C:
		}
		next := s.compile(policiesChanged, time.Now())
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// compile builds the policy set in force from the store and the time, and
// hands it to Apply when it differs from the last one. It returns when it
// must run again for a drill's deadline (zero: no drill pending).
func (s *Server) compile(policiesChanged bool, now time.Time) time.Time {
	snap := s.cfg.Policies.Snapshot()
	cur := s.state.Load()
	next := &state{version: snap.Version(), replaced: make(chan struct{})}
	if cur == nil || policiesChanged {
		objs, bad := s.dec.objects(snap)
		for _, err := range bad {
			s.log.Warn("policy in the store ignored", "err", err)
		}
		s.m.ignored.Add(float64(len(bad)))
		base, err := translate.CompilePolicies(objs)
		if err != nil {
			// Every object passed Validate, which is all compiling checks;
			// keep the last good set rather than serve none.
			s.log.Error("policies failed to compile; the previous set stays in force", "err", err)
			s.m.compileErrors.Inc()
			if cur == nil {
				base, _ = translate.CompilePolicies(nil)
			} else {
				objs, base = cur.objs, cur.base
			}
		}
		next.objs, next.base = objs, base
	} else {
		next.objs, next.base = cur.objs, cur.base
	}
	next.drills = s.drillsIn(snap)
	var wake time.Time
	next.drains, wake = activeDrains(next.drills, now)
	if cur != nil && !policiesChanged && slices.Equal(cur.drains, next.drains) {
		next.pol = cur.pol
		s.install(cur, next)
		return wake
	}
	next.pol = next.base.WithDrains(next.drains...)
	// Apply first: whoever sees the new engine (explain, a drill's
	// progress) may rely on the xDS server having it.
	if s.cfg.Apply != nil {
		s.cfg.Apply(next.pol)
	}
	s.install(cur, next)
	s.m.compiles.Inc()
	s.log.Info("policies in force", "objects", len(next.objs), "drains", fmt.Sprint(next.drains), "version", next.version)
	return wake
}

func (s *Server) install(cur, next *state) {
	s.state.Store(next)
	if cur != nil {
		close(cur.replaced)
	}
}

// decoder decodes the store's resources once per write.
type decoder struct {
	mu    sync.Mutex
	cache map[policy.Key]decoded
}

type decoded struct {
	stamp  policy.Timestamp
	obj    v1alpha1.Object
	source string
	err    error
}

// objects returns the valid policy objects of a snapshot, by kind,
// namespace and name, and an error for each invalid one (written by a
// newer meridiand, or damaged): those are left out.
func (d *decoder) objects(snap *policy.Snapshot) ([]v1alpha1.Object, []error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[policy.Key]bool{}
	var objs []v1alpha1.Object
	var bad []error
	for _, k := range v1alpha1.Kinds() {
		for _, r := range snap.List(k.Name) {
			seen[r.Key] = true
			dc, ok := d.cache[r.Key]
			if !ok || dc.stamp != r.Stamp {
				dc = decoded{stamp: r.Stamp}
				dc.obj, dc.source, dc.err = Decode(r)
				if dc.err == nil {
					if errs := dc.obj.Validate(); len(errs) > 0 {
						dc.err = fmt.Errorf("policyapi: %s: %w", r.Key, errs.ToAggregate())
					}
				}
				d.cache[r.Key] = dc
			}
			if dc.err != nil {
				bad = append(bad, dc.err)
				continue
			}
			objs = append(objs, dc.obj)
		}
	}
	for k := range d.cache {
		if !seen[k] {
			delete(d.cache, k)
		}
	}
	return objs, bad
}
