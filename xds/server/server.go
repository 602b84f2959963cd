package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/server/xdsadminpb"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// Defaults of Config.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultMaxDebounce = time.Second
)

// Config configures a Server. Registry is required.
type Config struct {
	// Registry is the global registry whose view is served.
	Registry *registry.Registry
	// Cluster is this control plane's own cluster: the cluster of proxies
	// whose node metadata names none.
	Cluster string
	// Domain of service hosts; default translate.DefaultDomain.
	Domain string
	// Debounce is the coalescing window: a change that arrives more than
	// Debounce after the last push is translated and pushed at once;
	// changes arriving sooner are coalesced and pushed once they have been
	// quiet for Debounce. Default DefaultDebounce (100ms).
	Debounce time.Duration
	// MaxDebounce bounds how long a stream of changes can hold a push
	// back. Default DefaultMaxDebounce (1s).
	MaxDebounce time.Duration
	// Logger; default slog.Default(). The server adds component=xds.
	Logger *slog.Logger
	// Metrics registers the server's metrics; default a private registry
	// (metrics are then only visible to tests).
	Metrics prometheus.Registerer
	// Policies in force at start; SetPolicies replaces them.
	Policies []v1alpha1.Object
	// RegistryOnly is the mesh's outbound traffic policy REGISTRY_ONLY,
	// for proxies whose node does not set one.
	RegistryOnly bool

	// Secrets publishes SDS secrets (trust/sds.Provider): each attested
	// proxy's SVID and the trust bundle. Nil: no SDS, and no proxy gets
	// mTLS in its resources.
	Secrets SecretSource
	// Attestor proves which workload a stream serves (KubeTokens,
	// PeerSVID, Attestors). Nil: no stream is attested.
	Attestor Attestor
	// Credentials hands out the certificates Gateways and
	// DestinationPolicies name (FileCredentials). Nil: none.
	Credentials CredentialSource
}

// Server translates the registry for every connected proxy and serves it
// over ADS (state of the world and delta). Create it with New, register it
// on a gRPC server with Register, and run it with Run.
type Server struct {
	cfg          Config
	log          *slog.Logger
	metrics      *metrics
	nodeDefaults translate.NodeDefaults
	delta        delta.Server
	// go-control-plane's delta server takes a context at construction and
	// ends its streams when it is done; Run cancels it when it returns,
	// which closes stopped and ends the state-of-the-world streams too.
	stop       context.CancelFunc
	stopped    <-chan struct{}
	sotwIDs    atomic.Int64
	running    atomic.Bool
	kick       chan struct{} // a group was created
	policyKick chan struct{} // SetPolicies was called

	mu       sync.Mutex
	view     *registry.View // the view the groups were last built from
	policies *translate.Policies
	// nextPolicies, when set, are applied (with a full rebuild) by the
	// next update.
	nextPolicies *translate.Policies
	groups       map[translate.Scope]*group
	unbuilt      []*group
	streams      map[streamKey]*stream
	reqStream    map[any]*stream

	warnMu sync.Mutex
	warned map[string]struct{}
}

// New validates the config and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("xds: config: Registry is required")
	}
	if cfg.Domain == "" {
		cfg.Domain = translate.DefaultDomain
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.MaxDebounce < cfg.Debounce {
		cfg.MaxDebounce = max(DefaultMaxDebounce, cfg.Debounce)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	pol, err := translate.CompilePolicies(cfg.Policies)
	if err != nil {
		return nil, fmt.Errorf("xds: config: policies: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("xds: metrics: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "xds"),
		metrics:      m,
		nodeDefaults: translate.NodeDefaults{Cluster: cfg.Cluster, RegistryOnly: cfg.RegistryOnly},
		kick:         make(chan struct{}, 1),
		policyKick:   make(chan struct{}, 1),
		policies:     pol,
		groups:       map[translate.Scope]*group{},
		streams:      map[streamKey]*stream{},
		reqStream:    map[any]*stream{},
		warned:       map[string]struct{}{},
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.stopped = stop, ctx.Done()
	// Envoy's empty first request for listeners and clusters means "all
	// of them"; for routes, endpoints and secrets it never does (see
	// legacyWildcard for state-of-the-world streams).
	s.delta = delta.NewServer(ctx, s, s, delta.WithLogger(gcpLogger{s.log}),
		delta.DeactivateLegacyWildcardForTypes([]string{translate.RouteType, translate.EndpointType, translate.SecretType}))
	return s, nil
}

// Register adds the aggregated discovery service (state of the world and
// delta) and the XDSAdmin service (what each proxy was sent, for
// meridianctl proxy-config; private keys never included) to a gRPC
// server.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, ads{s})
	xdsadminpb.RegisterXDSAdminServer(g, admin{s: s})
}

type ads struct{ s *Server }

func (a ads) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.sotwStream(st)
}

func (a ads) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.delta.DeltaStreamHandler(st, "")
}

// SetPolicies replaces the policies in force. Invalid objects are refused,
// with an error naming the object and field, and nothing changes;
// otherwise the next push (after the debounce period) rebuilds every
// resource under the new policies.
func (s *Server) SetPolicies(objs []v1alpha1.Object) error {
	pol, err := translate.CompilePolicies(objs)
	if err != nil {
		return fmt.Errorf("xds: policies: %w", err)
	}
	s.SetCompiledPolicies(pol)
	return nil
}

// Run follows the registry and pushes its changes until ctx is done, then
// ends every stream. It must run for anything to be served: it builds the
// resources of each new group of proxies, and debounces, translates and
// pushes registry changes.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("xds: Run called twice")
	}
	defer s.stop()
	sub := s.cfg.Registry.Subscribe()
	defer sub.Close()
	var rotated <-chan struct{}
	if s.cfg.Secrets != nil {
		var cancel func()
		rotated, cancel = s.cfg.Secrets.Subscribe()
		defer cancel()
	}
	v, _ := sub.Take()
	s.mu.Lock()
	s.view = v
	s.mu.Unlock()
	var lastPush time.Time
	for {
		s.buildNewGroups()
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			continue
		case <-rotated:
			// SVIDs or bundles changed: only secrets, at once.
			s.updateSecrets()
			continue
		case <-sub.Ready():
		case <-s.policyKick:
		}
		start := time.Now()
		// A change after a quiet period goes out at once; changes that
		// follow a push within the window are coalesced until they settle.
		if start.Sub(lastPush) < s.cfg.Debounce && s.debounce(ctx, sub, start) != nil {
			return nil
		}
		v, d := sub.Take()
		s.mu.Lock()
		policies := s.nextPolicies != nil
		s.mu.Unlock()
		if !d.Empty() || policies {
			s.update(v, d, start)
			lastPush = time.Now()
		}
	}
}

// debounce waits until no change has arrived for Debounce, or MaxDebounce
// after the first one; new groups are still built meanwhile.
func (s *Server) debounce(ctx context.Context, sub *registry.Subscription, start time.Time) error {
	quiet := time.NewTimer(s.cfg.Debounce)
	defer quiet.Stop()
	deadline := start.Add(s.cfg.MaxDebounce)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.kick:
			s.buildNewGroups()
		case <-sub.Ready():
			wait := min(s.cfg.Debounce, time.Until(deadline))
			if wait <= 0 {
				return nil
			}
			quiet.Reset(wait)
		case <-quiet.C:
			return nil
		}
	}
}

// buildNewGroups builds the groups proxies created since the last call,
// from the current view, and answers their waiting watches.
func (s *Server) buildNewGroups() {
	s.mu.Lock()
	gs := s.unbuilt
	s.unbuilt = nil
	in := translate.Input{View: s.view, Domain: s.cfg.Domain, Policies: s.policies}
	s.mu.Unlock()
	if len(gs) == 0 {
		return
	}
	plans := make([]*plan, len(gs))
	parallel(indexes(len(gs)), func(i int) { plans[i] = s.planFull(in, gs[i]) })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range plans {
		g := p.g
		if s.groups[g.scope] != g {
			continue // every stream left while it was being built
		}
		p.apply()
		g.ready = true
		for w := range g.watches {
			s.respond(w, nil, nil)
		}
	}
}

// update translates one coalesced batch of registry changes: load
// assignments only of the services that changed; clusters, listeners and
// routes only when a service definition or a cluster changed. Then it
// answers every waiting watch a changed resource concerns.
func (s *Server) update(v *registry.View, d registry.Delta, start time.Time) {
	t0 := time.Now()
	s.mu.Lock()
	old := s.view
	pol, newPolicies := s.policies, s.nextPolicies != nil
	if newPolicies {
		pol, s.nextPolicies = s.nextPolicies, nil
	}
	var gs []*group
	for _, g := range s.groups {
		if g.ready {
			gs = append(gs, g)
		}
	}
	s.mu.Unlock()

	in := translate.Input{View: v, Domain: s.cfg.Domain, Policies: pol}
	everything := d.Full || len(d.Clusters) > 0 || newPolicies
	defs := everything || definitionsChanged(old, v, d.Services)
	// Clusters of attested proxies check their peers' service accounts.
	peers := defs || slices.ContainsFunc(gs, func(g *group) bool {
		return g.scope.Type == translate.ClusterType && g.scope.Identity != ""
	}) && accountsChanged(old, v, d.Services)
	type job struct {
		g    *group
		full bool
	}
	var jobs []job
	for _, g := range gs {
		switch {
		case g.scope.Type == translate.EndpointType:
			if everything || len(d.Services) > 0 {
				jobs = append(jobs, job{g, everything})
			}
		case g.scope.Type == translate.SecretType:
			if everything {
				jobs = append(jobs, job{g, true}) // the credentials policies name
			}
		case defs, peers && g.scope.Type == translate.ClusterType && g.scope.Identity != "":
			jobs = append(jobs, job{g, true})
		}
	}
	plans := make([]*plan, len(jobs))
	parallel(indexes(len(jobs)), func(i int) {
		if jobs[i].full {
			plans[i] = s.planFull(in, jobs[i].g)
		} else {
			plans[i] = s.planServices(in, jobs[i].g, d.Services)
		}
	})

	rd := &round{start: start}
	s.mu.Lock()
	s.view, s.policies = v, pol
	for _, p := range plans {
		if s.groups[p.g.scope] != p.g {
			continue
		}
		names := p.apply()
		if len(names) == 0 {
			continue
		}
		for w := range p.g.watches {
			s.respond(w, names, rd)
		}
	}
	rd.sealed = true
	s.maybeConverged(rd, time.Now())
	s.mu.Unlock()
	s.metrics.recompute.Observe(time.Since(t0).Seconds())
}

// updateSecrets rebuilds every secret group after a rotation of SVIDs or
// bundles, and answers the watches of the secrets that changed.
func (s *Server) updateSecrets() {
	t0 := time.Now()
	s.mu.Lock()
	in := translate.Input{View: s.view, Domain: s.cfg.Domain, Policies: s.policies}
	var gs []*group
	for _, g := range s.groups {
		if g.ready && g.scope.Type == translate.SecretType {
			gs = append(gs, g)
		}
	}
	s.mu.Unlock()
	plans := make([]*plan, len(gs))
	parallel(indexes(len(gs)), func(i int) { plans[i] = s.planSecrets(in, gs[i]) })
	rd := &round{start: t0}
	s.mu.Lock()
	for _, p := range plans {
		if s.groups[p.g.scope] != p.g {
			continue
		}
		names := p.apply()
		for w := range p.g.watches {
			if len(names) > 0 {
				s.respond(w, names, rd)
			}
		}
	}
	rd.sealed = true
	s.maybeConverged(rd, time.Now())
	s.mu.Unlock()
}

// accountsChanged reports whether the service accounts the endpoints of
// any of the services run as changed between two views.
func accountsChanged(old, v *registry.View, keys map[registry.ServiceKey]struct{}) bool {
	if old == nil {
		return true
	}
	for k := range keys {
		if !slices.Equal(translate.ServiceAccounts(old, k), translate.ServiceAccounts(v, k)) {
			return true
		}
	}
	return false
}

// definitionsChanged reports whether any of the services was added,
// removed or redefined between two views.
func definitionsChanged(old, v *registry.View, keys map[registry.ServiceKey]struct{}) bool {
	if old == nil {
		return true
	}
	for k := range keys {
		a, okA := old.Service(k)
		b, okB := v.Service(k)
		if okA != okB || (okA && !a.Equal(b)) {
			return true
		}
	}
	return false
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// gcpLogger routes go-control-plane's logging into slog. Its Infof lines
// are per-request chatter (stale nonces), so they go to debug.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) logf(level slog.Level, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, "go-control-plane: "+fmt.Sprintf(format, args...))
	}
}

func (g gcpLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
