package workload

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// Config of a workload Server. Cluster, Registry and Store are required.
type Config struct {
	// Cluster is the local cluster's name. The registry must know it
	// (Registry.SetCluster) before New.
	Cluster  string
	Registry *registry.Registry
	Store    *store.Store
	// Log gets a component=workload attribute; default slog.Default().
	Log *slog.Logger
	// Metrics registers the server's metrics; default a private registry.
	Metrics prometheus.Registerer
	// DefaultTTL applies to registrations that give none. Default 30s.
	DefaultTTL time.Duration
	// Grace is how long a workload whose TTL ran out stays registered, as
	// unhealthy, before it is removed. Default 1m: long enough for a
	// restarting VM to come back under the same ID without its endpoint
	// leaving and returning, short enough that dead workloads do not
	// linger.
	Grace time.Duration
	// SweepInterval is how often Run looks for workloads whose TTL or
	// grace ran out: they change state at most this late. Default 1s.
	SweepInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = 30 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Server holds the registered workloads, keeps etcd and the local registry
// segment in step with them, and expires those that stop heartbeating. Its
// methods are safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	prefix string // etcd prefix of every registration, with a trailing slash

	// mu serializes every change, across the etcd write and the registry
	// update, so that the two agree and concurrent registrations of one
	// workload are one registration. Changes are rare next to reads of the
	// registry, which never take it.
	mu       sync.Mutex
	entries  map[string]*entry                         // by ID
	services map[registry.ServiceKey]map[string]*entry // by service, then ID
	owned    map[registry.ServiceKey]*registry.Service // definitions this server put
}

type entry struct {
	rec       record
	lastBeat  time.Time
	unhealthy bool
}

func (e *entry) expiresAt() time.Time { return e.lastBeat.Add(e.rec.TTL) }

// errNotFound is returned for IDs that are not registered.
var errNotFound = errors.New("workload: not registered")

// invalidError carries the field errors of a rejected request.
type invalidError struct{ errs field.ErrorList }

func (e *invalidError) Error() string { return "workload: " + e.errs.ToAggregate().Error() }

// New returns a server holding the registrations persisted in etcd, which
// it has put into the local segment. Every loaded workload gets a fresh TTL:
// heartbeats are not persisted (that would make each one an etcd write), so
// a workload that died while meridiand was down expires one TTL after the
// restart. Records that no longer validate are logged and left in etcd.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Registry == nil || cfg.Store == nil || cfg.Cluster == "" {
		return nil, errors.New("workload: Config needs Cluster, Registry and Store")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Log.With("component", "workload"),
		prefix:   cfg.Store.Key("workloads") + "/",
		entries:  map[string]*entry{},
		services: map[registry.ServiceKey]map[string]*entry{},
		owned:    map[registry.ServiceKey]*registry.Service{},
	}
	if s.segment() == nil {
		return nil, fmt.Errorf("workload: cluster %q is not in the registry", cfg.Cluster)
	}
	m, err := newMetrics(cfg.Metrics, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) load(ctx context.Context) error {
	resp, err := s.cfg.Store.Client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("workload: load registrations: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	network := s.segment().Cluster().Network
	now := s.cfg.Now()
	var changes []registry.Change
	for _, kv := range resp.Kvs {
		var rec record
		err := json.Unmarshal(kv.Value, &rec)
		if err == nil {
			err = rec.validate()
		}
		if err == nil && string(kv.Key) != s.key(&rec) {
			err = fmt.Errorf("stored under the wrong key (want %s)", s.key(&rec))
		}
		if err == nil {
			if ferr := checkFits(&rec, s.others(&rec)); ferr != nil {
				err = ferr
			}
		}
		if err != nil {
			s.log.Warn("skipping a stored registration", "key", string(kv.Key), "err", err)
			continue
		}
		s.add(&entry{rec: rec, lastBeat: now})
		changes = append(changes, registry.PutEndpoint(rec.endpoint(network, registry.Healthy)))
	}
	for k := range s.services {
		if c, ok := s.serviceChange(k); ok {
			changes = append(changes, c)
		}
	}
	if err := s.apply(changes); err != nil {
		return err
	}
	s.log.Info("loaded workload registrations", "workloads", len(s.entries), "services", len(s.services))
	return nil
}

// register adds or updates a registration. created reports whether it is
// new; the returned entry is a copy.
func (s *Server) register(ctx context.Context, rec record) (e entry, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ferr := checkFits(&rec, s.others(&rec)); ferr != nil {
		return entry{}, false, &invalidError{field.ErrorList{ferr}}
	}
	seg := s.segment()
	if seg == nil {
		return entry{}, false, fmt.Errorf("workload: cluster %q left the registry", s.cfg.Cluster)
	}
	now := s.cfg.Now()
	old := s.entries[rec.ID]
	rec.RegisteredAt = now
	if old != nil {
		rec.RegisteredAt = old.rec.RegisteredAt
	}
	value := mustJSON(&rec)
	if old == nil || !bytes.Equal(value, mustJSON(&old.rec)) {
		if _, err := s.cfg.Store.Client.Put(ctx, s.key(&rec), string(value)); err != nil {
			return entry{}, false, fmt.Errorf("workload: persist %s: %w", rec.ID, err)
		}
	}
	var changes []registry.Change
	if old != nil {
		s.remove(old)
		if old.rec.PortName != rec.PortName {
			changes = append(changes, registry.DeleteEndpoint(old.rec.endpoint("", 0).Key()))
		}
	}
	next := &entry{rec: rec, lastBeat: now}
	s.add(next)
	changes = append(changes, registry.PutEndpoint(rec.endpoint(seg.Cluster().Network, registry.Healthy)))
	if c, ok := s.serviceChange(rec.Service); ok {
		changes = append(changes, c)
	}
	return *next, old == nil, s.apply(changes)
}

// deregister removes a registration at once.
func (s *Server) deregister(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[id]
	if e == nil {
		return fmt.Errorf("%w: %s", errNotFound, id)
	}
	if _, err := s.cfg.Store.Client.Delete(ctx, s.key(&e.rec)); err != nil {
		return fmt.Errorf("workload: delete %s: %w", id, err)
	}
	return s.apply(s.removeChanges(e))
}

// heartbeat renews a registration's TTL, making it healthy again if it had
// expired. It returns a copy of the entry.
func (s *Server) heartbeat(id string) (entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[id]
	if e == nil {
		return entry{}, fmt.Errorf("%w: %s", errNotFound, id)
	}
	e.lastBeat = s.cfg.Now()
	if !e.unhealthy {
		return *e, nil
	}
	e.unhealthy = false
	return *e, s.apply([]registry.Change{registry.PutEndpoint(s.endpoint(e))})
}

// list returns copies of the registrations, optionally of one namespace
// and one service, ordered by namespace, service and ID.
func (s *Server) list(namespace, service string) []entry {
	s.mu.Lock()
	out := make([]entry, 0, len(s.entries))
	for _, e := range s.entries {
		if (namespace == "" || e.rec.Service.Namespace == namespace) && (service == "" || e.rec.Service.Name == service) {
			out = append(out, *e)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.rec.Service.Namespace, b.rec.Service.Namespace),
			cmp.Compare(a.rec.Service.Name, b.rec.Service.Name), cmp.Compare(a.rec.ID, b.rec.ID))
	})
	return out
}

// count returns how many registrations are healthy, or unhealthy.
func (s *Server) count(unhealthy bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		if e.unhealthy == unhealthy {
			n++
		}
	}
	return n
}

// Run expires workloads that stop heartbeating until ctx ends; it returns
// nil then. Call it once.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.sweep(ctx)
		}
	}
}

// sweep marks workloads whose TTL ran out unhealthy, and removes those
// whose grace ran out too. A removal that etcd refuses is retried on the
// next sweep.
func (s *Server) sweep(ctx context.Context) {
	// Bounded, since the lock is held across the etcd calls.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var changes []registry.Change
	for _, e := range s.entries {
		expires := e.expiresAt()
		switch {
		case now.After(expires.Add(s.cfg.Grace)):
			if _, err := s.cfg.Store.Client.Delete(ctx, s.key(&e.rec)); err != nil {
				s.log.Warn("removing an expired workload failed; will retry", "id", e.rec.ID, "err", err)
				continue
			}
			changes = append(changes, s.removeChanges(e)...)
			s.m.expiries.WithLabelValues("removed").Inc()
			s.log.Info("workload removed: no heartbeat", "id", e.rec.ID, "service", e.rec.Service.String(), "since", e.lastBeat)
		case now.After(expires) && !e.unhealthy:
			e.unhealthy = true
			changes = append(changes, registry.PutEndpoint(s.endpoint(e)))
			s.m.expiries.WithLabelValues("unhealthy").Inc()
			s.log.Info("workload unhealthy: no heartbeat", "id", e.rec.ID, "service", e.rec.Service.String(), "since", e.lastBeat)
		}
	}
	if err := s.apply(changes); err != nil {
		s.log.Error("expiry not applied to the registry", "err", err)
	}
}

// removeChanges forgets e and returns the registry changes that remove it.
// Callers hold mu.
func (s *Server) removeChanges(e *entry) []registry.Change {
	s.remove(e)
	changes := []registry.Change{registry.DeleteEndpoint(e.rec.endpoint("", 0).Key())}
	if c, ok := s.serviceChange(e.rec.Service); ok {
		changes = append(changes, c)
	}
	return changes
}

// serviceChange returns the change that makes a service's definition in
// the segment follow its registrations, unless another source (Kubernetes)
// defines the service: its definition wins. Callers hold mu.
func (s *Server) serviceChange(k registry.ServiceKey) (registry.Change, bool) {
	cur, defined := s.segment().Service(k)
	mine, owned := s.owned[k]
	if defined && (!owned || !cur.Equal(mine)) {
		delete(s.owned, k)
		return registry.Change{}, false
	}
	want := deriveService(k, slicesOf(s.services[k]))
	if want == nil {
		delete(s.owned, k)
		if defined {
			return registry.DeleteService(k), true
		}
		return registry.Change{}, false
	}
	s.owned[k] = want
	return registry.PutService(want), true
}

// apply hands changes to the registry. It fails only when the local
// cluster left the registry, which nothing does: etcd and the server's
// memory stay the source of truth, and the next change repairs the segment.
func (s *Server) apply(changes []registry.Change) error {
	if len(changes) == 0 {
		return nil
	}
	if _, err := s.cfg.Registry.Apply(s.cfg.Cluster, changes...); err != nil {
		return fmt.Errorf("workload: update the registry: %w", err)
	}
	return nil
}

func (s *Server) segment() *registry.Segment { return s.cfg.Registry.View().Segment(s.cfg.Cluster) }

func (s *Server) endpoint(e *entry) *registry.Endpoint {
	h := registry.Healthy
	if e.unhealthy {
		h = registry.Unhealthy
	}
	return e.rec.endpoint(s.segment().Cluster().Network, h)
}

func (s *Server) key(r *record) string {
	return s.prefix + r.Service.Namespace + "/" + r.Service.Name + "/" + r.ID
}

// others returns the other registrations of rec's service. Callers hold mu.
func (s *Server) others(rec *record) []*entry {
	var out []*entry
	for id, e := range s.services[rec.Service] {
		if id != rec.ID {
			out = append(out, e)
		}
	}
	return out
}

func (s *Server) add(e *entry) {
	s.entries[e.rec.ID] = e
	m := s.services[e.rec.Service]
	if m == nil {
		m = map[string]*entry{}
		s.services[e.rec.Service] = m
	}
	m[e.rec.ID] = e
}

func (s *Server) remove(e *entry) {
	delete(s.entries, e.rec.ID)
	delete(s.services[e.rec.Service], e.rec.ID)
	if len(s.services[e.rec.Service]) == 0 {
		delete(s.services, e.rec.Service)
	}
}

func slicesOf(m map[string]*entry) []*entry {
	out := make([]*entry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

func mustJSON(r *record) []byte {
	b, _ := json.Marshal(r) // a record always encodes
	return b
}
