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
	"sync/atomic"
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
	// Leader returns the API address of the replica that serves the
	// Workload API when this one does not (it leads the cluster): named in
	// the Unavailable answers of a replica that is not running, so that
	// clients retry there. "" means no other replica is known to lead —
	// an election is under way, or this replica leads and is about to
	// serve — and calls wait up to StartWait for Run to serve. Optional.
	Leader func() string
	// StartWait bounds how long a call waits for Run to serve while no
	// other replica is known to lead; default 10s.
	StartWait time.Duration
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
	if c.Leader == nil {
		c.Leader = func() string { return "" }
	}
	if c.StartWait <= 0 {
		c.StartWait = 10 * time.Second
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

	running atomic.Bool // Run is in progress

	// mu serializes every change, across the etcd write and the registry
	// update, so that the two agree and concurrent registrations of one
	// workload are one registration. Changes are rare next to reads of the
	// registry, which never take it.
	mu       sync.Mutex
	serving  bool                                      // Run has loaded the registrations and not returned
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

// notServingError is returned while Run is not running: this replica does
// not lead its cluster (or has not loaded the registrations yet).
type notServingError struct{ cluster, leader string }

func (e *notServingError) Error() string {
	if e.leader == "" {
		return fmt.Sprintf("workload: this meridiand does not serve the Workload API of cluster %s now: only its leader does, and none is known yet", e.cluster)
	}
	return fmt.Sprintf("workload: this meridiand does not serve the Workload API of cluster %s: its leader at %s does", e.cluster, e.leader)
}

// Serving reports whether Run serves: it has loaded the registrations
// and not returned.
func (s *Server) Serving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serving
}

// awaitServing waits, at most StartWait and within ctx, for Run to serve
// while no other replica is known to lead, so that a call made during an
// election or a start is served rather than refused.
func (s *Server) awaitServing(ctx context.Context) {
	if s.Serving() || s.cfg.Leader() != "" {
		return
	}
	give := time.NewTimer(s.cfg.StartWait)
	defer give.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !s.Serving() && s.cfg.Leader() == "" {
		select {
		case <-ctx.Done():
			return
		case <-give.C:
			return
		case <-poll.C:
		}
	}
}

// checkServing returns a *notServingError unless Run serves. Callers hold
// mu.
func (s *Server) checkServing() error {
	if s.serving {
		return nil
	}
	return &notServingError{cluster: s.cfg.Cluster, leader: s.cfg.Leader()}
}

// invalidError carries the field errors of a rejected request.
type invalidError struct{ errs field.ErrorList }

func (e *invalidError) Error() string { return "workload: " + e.errs.ToAggregate().Error() }

// New returns a server for the local cluster's workloads. It loads
// nothing and serves nothing until Run: see Run.
func New(cfg Config) (*Server, error) {
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
	return s, nil
}

// load reads every registration from etcd into memory and the segment and
// starts serving. Every loaded workload gets a fresh TTL: heartbeats are
// not persisted (that would make each one an etcd write), so a workload
// that died while no replica served expires one TTL after this one took
// over. Records that no longer validate are logged and left in etcd.
//
// The segment may hold what a previous leader put there (federation
// restores it when this replica takes the lead): a service definition
// equal to what the registrations derive is taken as this server's own,
// and a workload endpoint (its ID derived from its address) without a
// registration is removed — its registration was removed from etcd first.
func (s *Server) load(ctx context.Context) error {
	resp, err := s.cfg.Store.Client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("workload: load registrations: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := s.segment()
	if seg == nil {
		return fmt.Errorf("workload: cluster %q left the registry", s.cfg.Cluster)
	}
	network := seg.Cluster().Network
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
	orphans := 0
	seg.EachEndpoint(func(e *registry.Endpoint) bool {
		if _, ok := s.entries[e.ID]; !ok && Owns(e) {
			changes = append(changes, registry.DeleteEndpoint(e.Key()))
			orphans++
		}
		return true
	})
	for k, entries := range s.services {
		if cur, ok := seg.Service(k); ok && cur.Equal(deriveService(k, slicesOf(entries))) {
			s.owned[k] = cur
		}
		if c, ok := s.serviceChange(k); ok {
			changes = append(changes, c)
		}
	}
	if err := s.apply(changes); err != nil {
		return err
	}
	s.serving = true
	s.log.Info("serving the Workload API", "workloads", len(s.entries), "services", len(s.services), "orphans_removed", orphans)
	return nil
}

// Owns reports whether an endpoint of the local segment is the Workload
// API's: its ID is the one a registration of its service and address
// gets, which no Kubernetes endpoint has (their IDs are Pod names or
// addresses). Kubernetes discovery leaves these alone (kube.Config.Foreign).
func Owns(e *registry.Endpoint) bool {
	r := record{Service: e.Service, Address: e.Address(), Port: e.Port}
	return r.workloadID() == e.ID
}

// stopServing forgets every registration held in memory. The segment and
// etcd are left as they are: the next leader loads them.
func (s *Server) stopServing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serving = false
	clear(s.entries)
	clear(s.services)
	clear(s.owned)
}

// register adds or updates a registration. created reports whether it is
// new; the returned entry is a copy.
func (s *Server) register(ctx context.Context, rec record) (e entry, created bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkServing(); err != nil {
		return entry{}, false, err
	}
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
	if err := s.checkServing(); err != nil {
		return err
	}
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
	if err := s.checkServing(); err != nil {
		return entry{}, err
	}
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
func (s *Server) list(namespace, service string) ([]entry, error) {
	s.mu.Lock()
	if err := s.checkServing(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
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
	return out, nil
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

// Run serves the Workload API until ctx ends: it loads the registrations
// from etcd (retrying while etcd does not answer), serves them, and expires
// workloads that stop heartbeating. It returns nil when ctx ends, having
// stopped serving: calls are then answered Unavailable, naming the leader
// (Config.Leader). Run may be called again once it returned — meridiand
// runs it for each term this replica leads its cluster, since only one
// replica may hold the heartbeats and write the segment.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("workload: Run is already running")
	}
	defer s.running.Store(false)
	for {
		err := s.load(ctx)
		if err == nil {
			break
		}
		s.log.Warn("cannot serve the Workload API yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	defer s.stopServing()
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
