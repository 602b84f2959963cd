package dataplane

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/httpproxy"
	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/listen"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/upstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Options configure a Dataplane. Telemetry is required.
type Options struct {
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Listen configures the sockets; its Env, Secrets, Telemetry, Shadows
	// and Logger are filled in by New.
	Listen listen.Options
	// Resolver resolves endpoint names; default the system's.
	Resolver *upstream.Resolver
}

// Dataplane is the running configuration. Safe for concurrent use; Apply
// calls are serialized.
type Dataplane struct {
	o        Options
	log      *slog.Logger
	secrets  *identity.Secrets
	shadows  *httpproxy.Shadows
	listen   *listen.Manager
	deps     upstream.Deps
	clusters atomic.Pointer[map[string]*upstream.Cluster]
	routes   atomic.Pointer[map[string]*xdsconfig.RouteConfig]

	mu      sync.Mutex
	applied map[string]*xdsconfig.Endpoints // per cluster, the endpoints last applied

	ready     chan struct{}
	readyOnce sync.Once
}

// New builds an empty data plane.
func New(o Options) *Dataplane {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Resolver == nil {
		o.Resolver = upstream.NewResolver()
	}
	d := &Dataplane{o: o, log: o.Logger.With("component", "dataplane"), secrets: &identity.Secrets{}, applied: map[string]*xdsconfig.Endpoints{}, ready: make(chan struct{})}
	m := o.Telemetry.Metrics
	d.shadows = httpproxy.NewShadows(httpproxy.DefaultMaxShadows, func() { m.Overflow.WithLabelValues("", "mirrors").Inc() })
	d.deps = upstream.Deps{
		Secrets:    d.secrets,
		Resolver:   o.Resolver,
		OnOverflow: func(cluster, breaker string) { m.Overflow.WithLabelValues(cluster, breaker).Inc() },
		OnNoHost:   func(cluster string) { m.NoHealthy.WithLabelValues(cluster).Inc() },
		OnStale:    func(cluster string) { m.Stale.WithLabelValues(cluster).Inc() },
		OnEject: func(cluster string, h *lb.Host, ejected bool, reason string) {
			if ejected {
				m.Ejections.WithLabelValues(cluster, reason).Inc()
				m.Ejected.WithLabelValues(cluster).Inc()
				d.log.Info("dataplane: ejected an endpoint", "cluster", cluster, "endpoint", h.Addr, "reason", reason)
			} else {
				m.Ejected.WithLabelValues(cluster).Dec()
				d.log.Info("dataplane: endpoint back from ejection", "cluster", cluster, "endpoint", h.Addr)
			}
		},
	}
	lo := o.Listen
	lo.Env, lo.Secrets, lo.Telemetry, lo.Shadows, lo.Logger = d, d.secrets, o.Telemetry, d.shadows, o.Logger
	d.listen = listen.New(lo)
	empty := map[string]*upstream.Cluster{}
	d.clusters.Store(&empty)
	noRoutes := map[string]*xdsconfig.RouteConfig{}
	d.routes.Store(&noRoutes)
	return d
}

// Cluster implements httpproxy.Env.
func (d *Dataplane) Cluster(name string) *upstream.Cluster { return (*d.clusters.Load())[name] }

// Routes implements httpproxy.Env.
func (d *Dataplane) Routes(name string) *xdsconfig.RouteConfig { return (*d.routes.Load())[name] }

// Listeners returns the socket manager (for addresses in tests and the
// admin page).
func (d *Dataplane) Listeners() *listen.Manager { return d.listen }

// Clusters returns the running clusters by name.
func (d *Dataplane) Clusters() map[string]*upstream.Cluster { return *d.clusters.Load() }

// Apply makes a state the running configuration. Errors (sockets that
// cannot be bound) are returned; everything else is applied regardless.
func (d *Dataplane) Apply(s *xdsclient.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()

	secrets := make(map[string]*xdsconfig.Secret, s.Len(xdsclient.SecretType))
	s.Each(xdsclient.SecretType, func(name string, r xdsclient.Resource) { secrets[name] = r.(*xdsconfig.Secret) })
	d.secrets.Set(secrets)

	old := *d.clusters.Load()
	next := make(map[string]*upstream.Cluster, s.Len(xdsclient.ClusterType))
	s.Each(xdsclient.ClusterType, func(name string, r xdsclient.Resource) {
		cfg := r.(*xdsconfig.Cluster)
		c := old[name]
		switch {
		case c == nil:
			c = upstream.New(cfg, d.deps)
		case c.Config() != cfg:
			c.Update(cfg)
		}
		next[name] = c
		if cfg.Type == xdsconfig.ClusterEDS {
			var eps *xdsconfig.Endpoints
			if r, ok := s.Get(xdsclient.EndpointType, cfg.EDSName); ok {
				eps = r.(*xdsconfig.Endpoints)
			}
			if prev, seen := d.applied[name]; !seen || prev != eps {
				c.SetEndpoints(eps)
				d.applied[name] = eps
			}
		}
	})
	d.clusters.Store(&next)
	for name, c := range old {
		if _, ok := next[name]; !ok {
			c.Close()
			delete(d.applied, name)
		}
	}

	routes := make(map[string]*xdsconfig.RouteConfig, s.Len(xdsclient.RouteType))
	s.Each(xdsclient.RouteType, func(name string, r xdsclient.Resource) { routes[name] = r.(*xdsconfig.RouteConfig) })
	d.routes.Store(&routes)

	listeners := make(map[string]*xdsconfig.Listener, s.Len(xdsclient.ListenerType))
	s.Each(xdsclient.ListenerType, func(name string, r xdsclient.Resource) { listeners[name] = r.(*xdsconfig.Listener) })
	return d.listen.Update(listeners)
}

// Run hands freed memory back to the system releaseQuiet after an
// update (pushes come in bursts: clusters, endpoints, listeners, routes),
// at most every releaseEvery.
const (
	releaseQuiet = time.Second
	releaseEvery = 30 * time.Second
)

// Run applies every accepted state of the client until ctx ends. Socket
// errors are logged: the proxy keeps serving what it could bind.
//
// Decoding a large push (the first one above all) leaves garbage several
// times the size of what is kept; Go would hand it back to the system only
// gradually, so a sidecar's resident memory would reflect its largest
// push rather than its configuration. Once updates pause, at most every
// releaseEvery, Run collects and returns it at once (a few milliseconds
// for a proxy's heap).
func (d *Dataplane) Run(ctx context.Context, c *xdsclient.Client) error {
	var lastRelease time.Time
	release := time.NewTimer(time.Hour)
	release.Stop()
	for {
		select {
		case <-ctx.Done():
			release.Stop()
			return nil
		case <-c.Updates():
			// Synced before State: the state applied then holds every
			// type's first answer.
			synced := isClosed(c.Synced())
			if err := d.Apply(c.State()); err != nil {
				d.log.Error("dataplane: applying the configuration", "err", err)
			}
			if synced {
				d.readyOnce.Do(func() { close(d.ready) })
			}
			due := time.Now().Add(releaseQuiet)
			if next := lastRelease.Add(releaseEvery); next.After(due) {
				due = next
			}
			release.Reset(time.Until(due))
		case <-release.C:
			debug.FreeOSMemory()
			lastRelease = time.Now()
		}
	}
}

// Ready is closed once the first complete configuration (every subscribed
// type answered, see xdsclient.Client.Synced) has been applied: the
// proxy's readiness, as Envoy's is the end of its initial fetch and
// listener warming.
func (d *Dataplane) Ready() <-chan struct{} { return d.ready }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Close stops every listener, mirror and connection; idempotent.
func (d *Dataplane) Close() {
	d.listen.Close()
	d.shadows.Close()
	for _, c := range *d.clusters.Load() {
		c.Close()
	}
}
