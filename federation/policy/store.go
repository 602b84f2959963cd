package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxAttempts bounds compare-and-swap retries against replicas of the
// same cluster writing the same keys.
const maxAttempts = 50

// Errors callers can test for with errors.Is.
var (
	ErrNotFound = errors.New("policy: not found")
	ErrInvalid  = errors.New("policy: invalid")
	ErrFull     = errors.New("policy: store is full")
)

// Options configure a Store.
type Options struct {
	// Node names this replica mesh-wide ("cluster/replica"); it is the
	// origin of local writes. Required, and unique per replica: it breaks
	// ties between writes stamped alike.
	Node string
	// Client is the cluster's etcd. Nil keeps the store in memory (tests,
	// benchmarks).
	Client *clientv3.Client
	// Prefix of the store's keys; default "/meridian/policies/".
	Prefix string
	// MaxSpecBytes bounds one resource's spec; default 256 KiB, well under
	// etcd's request limit.
	MaxSpecBytes int
	// MaxResources bounds the resources and tombstones held, so that a
	// misbehaving peer cannot exhaust memory; default 100,000.
	MaxResources int
	// Now is the wall clock under the hybrid logical clock; default
	// time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = "/meridian/policies/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.MaxSpecBytes <= 0 {
		o.MaxSpecBytes = 256 << 10
	}
	if o.MaxResources <= 0 {
		o.MaxResources = 100_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Store holds the mesh's policy resources: written through any member,
// persisted in that cluster's etcd, replicated to every member. See the
// package documentation for the replication and collection rules. All
// methods are safe for concurrent use.
type Store struct {
	opts  Options
	log   *slog.Logger
	clock *Clock
	snap  atomic.Pointer[Snapshot]

	// writeMu serializes local writes, so that a vector taken under it
	// never claims a local write that is not yet in the snapshot.
	writeMu sync.Mutex

	mu        sync.Mutex // guards everything below and installs snapshots
	revs      map[Key]int64
	vector    Vector // what this member has from other origins
	gcHorizon Timestamp
	subs      map[*Subscription]struct{}

	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once
}

// Open loads the store from etcd (when Options.Client is set) and follows
// etcd from then on, so that writes made by other replicas of the cluster
// show up here. Close stops it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if opts.Node == "" {
		return nil, errors.New("policy: Options.Node is required")
	}
	s := &Store{
		opts: opts, log: opts.Logger.With("component", "policy"), clock: NewClock(opts.Now),
		revs: map[Key]int64{}, vector: Vector{}, subs: map[*Subscription]struct{}{},
		done: make(chan struct{}),
	}
	s.snap.Store(emptySnapshot)
	if opts.Client == nil {
		close(s.done)
		return s, nil
	}
	rev, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.follow(wctx, rev)
	return s, nil
}

// Close stops following etcd. It is idempotent.
func (s *Store) Close() {
	s.closed.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		<-s.done
	})
}

// Snapshot returns the current snapshot. It never blocks.
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// MaxResources is the most resources and tombstones the store holds.
func (s *Store) MaxResources() int { return s.opts.MaxResources }

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *Clock { return s.clock }

// Put writes a resource's spec. It returns once the write is in this
// cluster's etcd, stamped later than anything this member has seen.
func (s *Store) Put(ctx context.Context, k Key, spec []byte) (*Resource, error) {
	errs := k.Validate(field.NewPath("key"))
	if len(spec) > s.opts.MaxSpecBytes {
		errs = append(errs, field.TooLong(field.NewPath("spec"), "", s.opts.MaxSpecBytes))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errs.ToAggregate())
	}
	return s.write(ctx, k, append([]byte(nil), spec...), false)
}

// Delete replaces a resource with a tombstone. Deleting a missing resource
// gives ErrNotFound.
func (s *Store) Delete(ctx context.Context, k Key) (*Resource, error) {
	if errs := k.Validate(field.NewPath("key")); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errs.ToAggregate())
	}
	return s.write(ctx, k, nil, true)
}

func (s *Store) write(ctx context.Context, k Key, spec []byte, deleted bool) (*Resource, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for attempt := range maxAttempts {
		if attempt > 0 {
			// Another replica is writing the same key in a loop: let it
			// finish a write before trying again.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(time.Millisecond))))
		}
		cur, rev := s.current(k)
		if deleted && (cur == nil || cur.Deleted) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, k)
		}
		if cur == nil && s.Snapshot().tree.Len() >= s.opts.MaxResources {
			return nil, fmt.Errorf("%w: %d resources", ErrFull, s.opts.MaxResources)
		}
		r := &Resource{Key: k, Spec: spec, Stamp: s.clock.Now(), Origin: s.opts.Node, Deleted: deleted}
		if s.opts.Client == nil {
			s.install([]*Resource{r}, nil, nil)
			return r, nil
		}
		newRev, other, err := s.cas(ctx, r, rev)
		if err != nil {
			return nil, err
		}
		if newRev != 0 {
			s.install([]*Resource{r}, []int64{newRev}, nil)
			return r, nil
		}
		// Another replica of this cluster wrote the key in between: take
		// its value and stamp again after it, so this write is the last.
		if other != nil {
			s.clock.Observe(other.r.Stamp)
			s.install([]*Resource{other.r}, []int64{other.rev}, nil)
		}
	}
	return nil, fmt.Errorf("policy: write %s: too much contention", k)
}

// current returns what the store holds for a key and its etcd revision.
func (s *Store) current(k Key) (*Resource, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.Snapshot().lookup(k)
	return r, s.revs[k]
}

// Sync is what one member sends another so that the other catches up.
type Sync struct {
	// Records the receiver lacks (everything, when Full).
	Records []Resource
	// Vector is the sender's vector, taken with Records.
	Vector Vector
	// Horizon: the sender collected every tombstone stamped at or below it.
	Horizon Timestamp
	// Full: Records is everything the sender holds. The receiver then
	// drops what it holds that the sender lacks, up to Horizon: such
	// records were deleted and their tombstones already collected.
	Full bool
}

// Changes returns what a member with vector since lacks, or everything when
// full is set — or when since does not reach this store's collection
// horizon for some origin: that member may hold records whose deletes were
// collected here, and only a full copy tells it which. The result is
// consistent: the vector it carries covers exactly what the records hold.
func (s *Store) Changes(since Vector, full bool) Sync {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Sync{Vector: maps.Clone(s.vector), Horizon: s.gcHorizon, Full: full}
	// Under writeMu no local write is in flight: every local record is
	// stamped before now.
	out.Vector[s.opts.Node] = s.clock.Now()
	for o := range out.Vector {
		if since[o] < s.gcHorizon {
			out.Full = true
		}
	}
	full = out.Full
	s.Snapshot().each(func(r *Resource) {
		if full || r.Stamp > since[r.Origin] {
			out.Records = append(out.Records, *r)
		}
	})
	return out
}

// Vector returns this member's vector; its own entry is the clock's now.
func (s *Store) Vector() Vector {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := maps.Clone(s.vector)
	v[s.opts.Node] = s.clock.Now()
	return v
}

// Coverage returns the stamp up to which this member has every record
// written by each of the given origins (the smallest vector entry among
// them): what it advertises so that tombstones can be collected.
func (s *Store) Coverage(origins []string) Timestamp {
	v := s.Vector()
	min := v[s.opts.Node]
	for _, o := range origins {
		if v[o] < min {
			min = v[o]
		}
	}
	return min
}

// Horizon returns the stamp up to which tombstones were collected.
func (s *Store) Horizon() Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gcHorizon
}

// ApplyResult says what Apply did with a Sync.
type ApplyResult struct {
	// Applied records won over what was held; Dropped ones were collected
	// deletes (removed here too).
	Applied, Dropped int
	// Rejected records failed validation or came back from collected
	// deletes (an older record for a key deleted past the horizon).
	Rejected int
	// Errors describes the first rejected records.
	Errors []error
}

// Apply merges a Sync received from another member: each record that wins
// under last-writer-wins is persisted and installed, then the sender's
// vector is merged into this member's. Invalid records are rejected one by
// one; the rest still apply.
func (s *Store) Apply(ctx context.Context, in Sync) (ApplyResult, error) {
	var res ApplyResult
	var cands []*Resource
	var maxStamp Timestamp
	present := make(map[Key]struct{}, len(in.Records))
	for i := range in.Records {
		r := &in.Records[i]
		if errs := r.validate(s.opts.MaxSpecBytes, field.NewPath("records").Index(i)); len(errs) > 0 {
			res.reject(errs.ToAggregate())
			continue
		}
		present[r.Key] = struct{}{}
		maxStamp = max(maxStamp, r.Stamp)
		cands = append(cands, r)
	}
	s.clock.Observe(maxStamp)
	for len(cands) > 0 {
		n := min(len(cands), 64) // etcd allows 128 operations per transaction
		applied, rejected, err := s.merge(ctx, cands[:n])
		if err != nil {
			return res, err
		}
		res.Applied += applied
		for _, e := range rejected {
			res.reject(e)
		}
		cands = cands[n:]
	}
	if in.Full {
		dropped, err := s.dropMissing(ctx, present, in.Horizon)
		if err != nil {
			return res, err
		}
		res.Dropped = dropped
	}
	s.mu.Lock()
	if in.Full && in.Horizon > s.gcHorizon {
		s.gcHorizon = in.Horizon
	}
	for o, t := range in.Vector {
		if o != s.opts.Node && t > s.vector[o] {
			s.vector[o] = t
		}
	}
	s.mu.Unlock()
	return res, nil
}

func (r *ApplyResult) reject(err error) {
	r.Rejected++
	if len(r.Errors) < 5 {
		r.Errors = append(r.Errors, err)
	}
}

// merge persists and installs the records among rs that win over what is
// held. A record for a key this member does not hold, stamped at or below
// the collection horizon, is a delete coming back from the dead: rejected.
func (s *Store) merge(ctx context.Context, rs []*Resource) (applied int, rejected []error, err error) {
	for range maxAttempts {
		var win []*Resource
		var revs []int64
		rejected = rejected[:0]
		s.mu.Lock()
		snap := s.Snapshot()
		for _, r := range rs {
			cur, ok := snap.lookup(r.Key)
			switch {
			case !ok && r.Stamp <= s.gcHorizon:
				rejected = append(rejected, fmt.Errorf("%s stamped %s: deleted and collected up to %s", r.Key, r.Stamp, s.gcHorizon))
			case !ok && snap.tree.Len()+len(win) >= s.opts.MaxResources:
				rejected = append(rejected, fmt.Errorf("%s: %w", r.Key, ErrFull))
			case !ok || r.Newer(cur):
				win = append(win, r)
				revs = append(revs, s.revs[r.Key])
			}
		}
		s.mu.Unlock()
		if len(win) == 0 {
			return 0, rejected, nil
		}
		if s.opts.Client == nil {
			s.install(win, nil, nil)
			return len(win), rejected, nil
		}
		newRevs, err := s.casAll(ctx, win, revs)
		if err != nil {
			return 0, nil, err
		}
		if newRevs != nil {
			s.install(win, newRevs, nil)
			return len(win), rejected, nil
		}
		// A replica of this cluster wrote some of these keys meanwhile:
		// casAll installed what etcd holds; decide again.
	}
	return 0, nil, errors.New("policy: merge: too much contention")
}

// dropMissing removes held records that a full Sync lacks and that are
// stamped at or below its horizon: the sender collected their deletes.
func (s *Store) dropMissing(ctx context.Context, present map[Key]struct{}, horizon Timestamp) (int, error) {
	var drop []*Resource
	s.Snapshot().each(func(r *Resource) {
		if _, ok := present[r.Key]; !ok && r.Stamp <= horizon {
			drop = append(drop, r)
		}
	})
	return s.remove(ctx, drop)
}

// Collect removes the tombstones stamped at or below horizon — the stamp
// every member is known to have reached — and remembers the horizon so
// that older records for those keys are not accepted again.
func (s *Store) Collect(ctx context.Context, horizon Timestamp) (int, error) {
	s.mu.Lock()
	if horizon > s.gcHorizon {
		s.gcHorizon = horizon
	}
	s.mu.Unlock()
	var drop []*Resource
	s.Snapshot().each(func(r *Resource) {
		if r.Deleted && r.Stamp <= horizon {
			drop = append(drop, r)
		}
	})
	return s.remove(ctx, drop)
}

// remove deletes records from etcd (unless rewritten meanwhile) and from
// memory.
func (s *Store) remove(ctx context.Context, drop []*Resource) (int, error) {
	removed := 0
	for _, r := range drop {
		_, rev := s.current(r.Key)
		if s.opts.Client != nil {
			k := s.opts.Prefix + r.etcdKey()
			resp, err := s.opts.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
				Then(clientv3.OpDelete(k)).Commit()
			if err != nil {
				return removed, fmt.Errorf("policy: remove %s: %w", r.Key, err)
			}
			if !resp.Succeeded {
				continue // rewritten: the follower installs the new value
			}
		}
		// The etcd watch may have removed it already.
		s.mu.Lock()
		if cur, ok := s.Snapshot().lookup(r.Key); ok && cur.same(r) {
			s.installLocked(nil, nil, []Key{r.Key})
		}
		s.mu.Unlock()
		removed++
	}
	return removed, nil
}

// install puts records that win over what is held (checked again under
// the lock) and removes keys, then publishes a new snapshot.
func (s *Store) install(rs []*Resource, revs []int64, remove []Key) {
	s.mu.Lock()
	s.installLocked(rs, revs, remove)
	s.mu.Unlock()
}

func (s *Store) installLocked(rs []*Resource, revs []int64, remove []Key) {
	old := s.Snapshot()
	txn := old.tree.Txn()
	live := old.live
	modified := false
	var changed []Key
	for i, r := range rs {
		if revs != nil && revs[i] > s.revs[r.Key] {
			s.revs[r.Key] = revs[i]
		}
		cur, ok := txn.Get(r.Key.treeKey())
		if ok && !r.Newer(cur) {
			continue
		}
		txn.Insert(r.Key.treeKey(), r)
		modified = true
		live += liveDelta(cur, ok) + b2i(!r.Deleted)
		if !ok && r.Deleted {
			continue // a tombstone for something never seen changes nothing visible
		}
		changed = append(changed, r.Key)
	}
	for _, k := range remove {
		if cur, ok := txn.Delete(k.treeKey()); ok {
			modified = true
			live += liveDelta(cur, true)
			delete(s.revs, k)
			if !cur.Deleted {
				changed = append(changed, k)
			}
		}
	}
	if !modified {
		return
	}
	s.snap.Store(&Snapshot{version: old.version + 1, tree: txn.CommitOnly(), live: live})
	for sub := range s.subs {
		sub.add(changed)
	}
}

// liveDelta is -1 when a live resource is being replaced or removed.
func liveDelta(cur *Resource, ok bool) int {
	if ok && !cur.Deleted {
		return -1
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
