package registry

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options tune a Registry. The zero value gives the defaults.
type Options struct {
	// LogChanges bounds the changes kept per segment for peers that pull
	// "changes since v". Default 200,000.
	LogChanges int
	// TombstoneTTL bounds how long a batch, and so a delete, stays in the
	// log. A peer further behind than this gets a full copy. Default 15m.
	TombstoneTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.LogChanges <= 0 {
		o.LogChanges = 200_000
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Errors callers can test for with errors.Is.
var (
	ErrUnknownCluster = errors.New("registry: unknown cluster")
	// ErrVersionGap means a replicated batch does not follow the replica's
	// version: the caller must pull the missing batches or a full copy.
	ErrVersionGap = errors.New("registry: batch does not follow the segment's version")
)

// Batch is one applied batch of changes, as the log keeps it and as
// federation replicates it.
type Batch struct {
	Epoch   uint64    `json:"epoch"`
	Version uint64    `json:"version"`
	Changes []Change  `json:"changes"`
	At      time.Time `json:"at"`
}

type changeLog struct {
	epoch   uint64
	batches []Batch // contiguous versions, oldest first
	changes int
}

// Registry is the mutable holder of the global view. Writers are serialized
// by one lock; readers take the current View with no lock at all. All
// methods are safe for concurrent use.
type Registry struct {
	opts Options
	view atomic.Pointer[View]

	mu   sync.Mutex // serializes writers; guards logs and subs
	logs map[string]*changeLog
	subs map[*Subscription]struct{}
}

// New returns an empty registry.
func New(opts Options) *Registry {
	r := &Registry{opts: opts.withDefaults(), logs: map[string]*changeLog{}, subs: map[*Subscription]struct{}{}}
	r.view.Store(emptyView)
	return r
}

// View returns the current snapshot. It never blocks.
func (r *Registry) View() *View { return r.view.Load() }

// SetCluster adds a cluster with an empty segment, or updates the
// description of a known one (its contents and version stay).
func (r *Registry) SetCluster(c Cluster) error {
	if errs := ValidateCluster(c, field.NewPath("cluster")); len(errs) > 0 {
		return fmt.Errorf("registry: %w", errs.ToAggregate())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	seg, ok := v.segments[c.Name]
	if ok && seg.cluster.Equal(c) {
		return nil
	}
	if ok {
		cp := *seg
		cp.cluster = c
		seg = &cp
	} else {
		seg = newSegment(c)
		r.logs[c.Name] = &changeLog{}
	}
	r.publish(v, seg, nil, &Delta{Clusters: set(c.Name)})
	return nil
}

// Apply validates the changes and applies them to a cluster's segment as one
// batch, for the cluster's owner (its discovery sources). The registry takes
// ownership of the values: callers must not modify them afterwards. It
// returns the segment's version: one more than before when anything changed,
// unchanged when every change was a no-op. An invalid change rejects the
// whole batch.
func (r *Registry) Apply(cluster string, changes ...Change) (uint64, error) {
	if err := validateChanges(changes); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	seg, ok := v.segments[cluster]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownCluster, cluster)
	}
	next, effective := seg.apply(changes)
	if len(effective) == 0 {
		return seg.version, nil
	}
	next.version = seg.version + 1
	r.appendLog(cluster, Batch{Epoch: next.epoch, Version: next.version, Changes: effective, At: r.opts.Now()})
	r.publish(v, next, effective, &Delta{})
	return next.version, nil
}

// ApplyBatch applies a batch replicated from a cluster's owner (or from any
// peer that has it). The batch must carry the segment's epoch and the
// version after the segment's current one, or ErrVersionGap is returned and
// nothing changes. Changes are validated: they come from the network.
func (r *Registry) ApplyBatch(cluster string, b Batch) error {
	if err := validateChanges(b.Changes); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	seg, ok := v.segments[cluster]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownCluster, cluster)
	}
	if b.Epoch != seg.epoch || b.Version != seg.version+1 {
		return fmt.Errorf("%w: have %d.%d, batch is %d.%d", ErrVersionGap, seg.epoch, seg.version, b.Epoch, b.Version)
	}
	next, effective := seg.apply(b.Changes)
	if next == seg {
		cp := *seg
		next = &cp
	}
	next.version = b.Version
	if b.At.IsZero() {
		b.At = r.opts.Now()
	}
	b.Changes = effective
	r.appendLog(cluster, b)
	r.publish(v, next, effective, &Delta{})
	return nil
}

// Replace sets a cluster's segment to a full copy: on a new replica, after a
// gap too long for the log, after the owner restarted with a new epoch, or
// when the owner restores its own segment. Subscribers are told exactly
// which keys differ from what was there before.
func (r *Registry) Replace(d SegmentData) error {
	if errs := ValidateCluster(d.Cluster, field.NewPath("cluster")); len(errs) > 0 {
		return fmt.Errorf("registry: %w", errs.ToAggregate())
	}
	for i, s := range d.Services {
		if errs := ValidateService(s, field.NewPath("services").Index(i)); len(errs) > 0 {
			return fmt.Errorf("registry: %w", errs.ToAggregate())
		}
	}
	for i, e := range d.Endpoints {
		if errs := ValidateEndpoint(e, field.NewPath("endpoints").Index(i)); len(errs) > 0 {
			return fmt.Errorf("registry: %w", errs.ToAggregate())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	old, ok := v.segments[d.Cluster.Name]
	if !ok {
		old = newSegment(d.Cluster)
	}
	diff := old.Diff(d.Services, d.Endpoints)
	// Applying the diff to the old segment keeps unchanged values shared.
	next, effective := old.apply(diff)
	if next == old {
		cp := *old
		next = &cp
	}
	next.cluster, next.epoch, next.version = d.Cluster, d.Epoch, d.Version
	r.logs[d.Cluster.Name] = &changeLog{epoch: d.Epoch}
	delta := &Delta{}
	if !old.cluster.Equal(d.Cluster) || !ok {
		delta.Clusters = set(d.Cluster.Name)
	}
	r.publish(v, next, effective, delta)
	return nil
}

// RemoveCluster forgets a cluster: its segment, status and log.
func (r *Registry) RemoveCluster(cluster string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	seg, ok := v.segments[cluster]
	if !ok {
		return
	}
	delta := &Delta{Clusters: set(cluster), Services: map[ServiceKey]struct{}{}, Endpoints: map[EndpointRef]struct{}{}}
	seg.EachService(func(s *Service) bool { delta.Services[s.Key()] = struct{}{}; return true })
	seg.EachEndpoint(func(e *Endpoint) bool {
		delta.Services[e.Service] = struct{}{}
		delta.Endpoints[EndpointRef{Cluster: cluster, EndpointKey: e.Key()}] = struct{}{}
		return true
	})
	delete(r.logs, cluster)
	next := &View{version: v.version + 1, segments: without(v.segments, cluster), status: without(v.status, cluster)}
	r.store(next, delta)
}

// SetStatus records a cluster's state as federation sees it.
func (r *Registry) SetStatus(cluster string, st ClusterStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.View()
	if _, ok := v.segments[cluster]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownCluster, cluster)
	}
	if v.status[cluster] == st {
		return nil
	}
	status := maps.Clone(v.status)
	status[cluster] = st
	r.store(&View{version: v.version + 1, segments: v.segments, status: status}, &Delta{Clusters: set(cluster)})
	return nil
}

// ChangesSince returns the batches after version, for a peer that has the
// segment at (epoch, version). ok is false when the log cannot answer (a
// different epoch, or batches already dropped): the peer needs a full copy.
func (r *Registry) ChangesSince(cluster string, epoch, version uint64) (batches []Batch, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seg, known := r.View().segments[cluster]
	l := r.logs[cluster]
	if !known || l == nil || l.epoch != epoch || seg.epoch != epoch || version > seg.version {
		return nil, false
	}
	if version == seg.version {
		return nil, true
	}
	if len(l.batches) == 0 || l.batches[0].Version > version+1 {
		return nil, false
	}
	i := int(version + 1 - l.batches[0].Version)
	return append([]Batch(nil), l.batches[i:]...), true
}

func (r *Registry) appendLog(cluster string, b Batch) {
	l := r.logs[cluster]
	if l.epoch != b.Epoch {
		*l = changeLog{epoch: b.Epoch}
	}
	l.batches = append(l.batches, b)
	l.changes += len(b.Changes)
	cutoff := b.At.Add(-r.opts.TombstoneTTL)
	drop := 0
	for drop < len(l.batches)-1 && (l.changes > r.opts.LogChanges || l.batches[drop].At.Before(cutoff)) {
		l.changes -= len(l.batches[drop].Changes)
		drop++
	}
	if drop > 0 {
		l.batches = append(l.batches[:0:0], l.batches[drop:]...)
	}
}

// publish installs seg in a new view and tells subscribers what changed.
// Callers hold r.mu.
func (r *Registry) publish(v *View, seg *Segment, effective []Change, delta *Delta) {
	segments := maps.Clone(v.segments)
	segments[seg.cluster.Name] = seg
	for _, c := range effective {
		delta.addChange(seg.cluster.Name, c)
	}
	r.store(&View{version: v.version + 1, segments: segments, status: v.status}, delta)
}

func (r *Registry) store(next *View, delta *Delta) {
	r.view.Store(next)
	for s := range r.subs {
		s.add(delta)
	}
}

func validateChanges(changes []Change) error {
	var errs field.ErrorList
	for i := range changes {
		errs = append(errs, changes[i].Validate(field.NewPath("changes").Index(i))...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("registry: %w", errs.ToAggregate())
	}
	return nil
}

func without[V any](m map[string]V, drop string) map[string]V {
	out := maps.Clone(m)
	delete(out, drop)
	return out
}

func set(names ...string) map[string]struct{} {
	out := make(map[string]struct{}, len(names))
	for _, n := range names {
		out[n] = struct{}{}
	}
	return out
}
