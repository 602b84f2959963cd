package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/registry"
)

// segVer is a segment's (epoch, version). Epochs only grow (they are
// leadership terms, at least the wall-clock millisecond they began), so the
// pair orders copies of one cluster's segment.
type segVer struct{ epoch, version uint64 }

func (a segVer) less(b segVer) bool {
	return a.epoch < b.epoch || (a.epoch == b.epoch && a.version < b.version)
}

func (a segVer) String() string { return fmt.Sprintf("%d.%d", a.epoch, a.version) }

// haveVersion returns what this member holds of a cluster's segment.
func (f *Federation) haveVersion(cluster string) segVer {
	seg := f.reg.View().Segment(cluster)
	if seg == nil {
		return segVer{}
	}
	return segVer{seg.Epoch(), seg.Version()}
}

// track is what this member knows of one cluster's segment beyond what it
// holds.
type track struct {
	target      segVer   // newest version known to exist
	holders     []string // members that said they hold target, newest first
	behindSince time.Time
	inflight    bool
	failures    int
	nextTry     time.Time
}

// replicator pulls what gossip says this member lacks: segments from their
// owner or any member that holds them, policies from any member ahead.
// Gossip callbacks only record what they heard and wake run; pulls run in
// goroutines run owns, at most maxPulls at once, one per cluster.
type replicator struct {
	f    *Federation
	kick chan struct{}
	sem  chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	tracks      map[string]*track
	polPending  policy.Vector        // origin → newest stamp heard of
	polSources  map[string]time.Time // members to pull policies from → when heard
	polInflight bool
	failedAt    map[string]time.Time // member → last failed pull
}

const maxPulls = 8

func newReplicator(f *Federation) *replicator {
	return &replicator{
		f: f, kick: make(chan struct{}, 1), sem: make(chan struct{}, maxPulls),
		tracks: map[string]*track{}, polPending: policy.Vector{}, polSources: map[string]time.Time{}, failedAt: map[string]time.Time{},
	}
}

func (r *replicator) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// fromUsable reports whether an announcement's holder may be used; a known
// but unverified member's announcements are dropped.
func (r *replicator) fromUsable(holder string) bool {
	if holder == r.f.node {
		return false
	}
	m, known := r.f.members.get(holder)
	if known && !m.verified {
		r.f.m.drop(dropUnverified)
		return false
	}
	return true
}

func (r *replicator) segmentAnnounced(a *pb.SegmentAnnounce) {
	if !r.fromUsable(a.GetHolder()) {
		return
	}
	v := segVer{a.GetEpoch(), a.GetVersion()}
	if v.less(r.f.haveVersion(a.GetCluster())) {
		r.f.m.drop(dropReplayed)
		return
	}
	r.observe(a.GetCluster(), v, a.GetHolder())
}

func (r *replicator) policyAnnounced(a *pb.PolicyAnnounce) {
	if !r.fromUsable(a.GetHolder()) {
		return
	}
	r.mu.Lock()
	r.polPending.Merge(policy.Vector{a.GetOrigin(): policy.Timestamp(a.GetStamp())})
	r.polSources[a.GetHolder()] = time.Now()
	r.mu.Unlock()
	r.wake()
}

// mergeState takes a member's full state from a gossip push/pull.
func (r *replicator) mergeState(st *pb.PushPullState) {
	if !r.fromUsable(st.GetNode()) {
		return
	}
	for _, s := range st.GetSegments() {
		r.observe(s.GetCluster(), segVer{s.GetEpoch(), s.GetVersion()}, st.GetNode())
	}
	r.mu.Lock()
	r.polPending.Merge(vectorFromPB(st.GetPolicyVector()))
	r.polSources[st.GetNode()] = time.Now()
	r.mu.Unlock()
	r.wake()
}

// observeMeta takes the segment version a member advertises for its own
// cluster.
func (r *replicator) observeMeta(node string, meta *pb.Meta) {
	if node == r.f.node || meta.GetEpoch() == 0 {
		return
	}
	r.observe(meta.GetCluster(), segVer{meta.GetEpoch(), meta.GetVersion()}, node)
}

// observe records that holder has cluster's segment at v.
func (r *replicator) observe(cluster string, v segVer, holder string) {
	if cluster == r.f.cfg.Cluster.Name && r.f.leading.Load() {
		return // this replica is the source
	}
	if !r.f.haveVersion(cluster).less(v) {
		return
	}
	r.mu.Lock()
	t := r.tracks[cluster]
	if t == nil {
		t = &track{}
		r.tracks[cluster] = t
	}
	switch {
	case t.target.less(v):
		t.target, t.holders = v, []string{holder}
	case t.target == v && !slices.Contains(t.holders, holder):
		t.holders = append([]string{holder}, t.holders[:min(len(t.holders), 7)]...)
	}
	if t.behindSince.IsZero() {
		t.behindSince = time.Now()
	}
	r.mu.Unlock()
	r.wake()
}

// behind returns since when this member's copy of a cluster has been
// behind a version it knows exists (zero when up to date), and by how many
// versions within the same epoch (1 across epochs).
func (r *replicator) behind(cluster string) (since time.Time, versions uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tracks[cluster]
	if t == nil {
		return time.Time{}, 0
	}
	have := r.f.haveVersion(cluster)
	if !have.less(t.target) {
		return time.Time{}, 0
	}
	if have.epoch != t.target.epoch {
		return t.behindSince, 1
	}
	return t.behindSince, t.target.version - have.version
}

// target returns the newest version of a cluster's segment this member
// knows exists.
func (r *replicator) target(cluster string) segVer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.tracks[cluster]; t != nil {
		return t.target
	}
	return segVer{}
}

func (r *replicator) run(ctx context.Context) {
	defer r.wg.Wait()
	tick := time.NewTicker(r.f.cfg.Gossip.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-tick.C:
		}
		r.schedule(ctx)
	}
}

// schedule starts the pulls that are due.
func (r *replicator) schedule(ctx context.Context) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for cluster, t := range r.tracks {
		if cluster == r.f.cfg.Cluster.Name && r.f.leading.Load() {
			if !t.inflight {
				delete(r.tracks, cluster)
			}
			continue
		}
		if !r.f.haveVersion(cluster).less(t.target) {
			t.behindSince, t.failures = time.Time{}, 0
			continue
		}
		if t.behindSince.IsZero() {
			t.behindSince = now
		}
		if t.inflight || now.Before(t.nextTry) {
			continue
		}
		t.inflight = true
		r.wg.Add(1)
		go r.pullSegment(ctx, cluster)
	}
	if !r.polInflight && len(r.polSources) > 0 {
		r.polInflight = true
		r.wg.Add(1)
		go r.pullPolicies(ctx)
	}
}

// candidates orders the members to pull a cluster's segment from: those
// that announced the newest version, the cluster's owner, then everyone
// else live; members that failed recently go last.
func (r *replicator) candidates(cluster string) []string {
	r.mu.Lock()
	var out []string
	if t := r.tracks[cluster]; t != nil {
		out = slices.Clone(t.holders)
	}
	r.mu.Unlock()
	if o, ok := r.f.members.owner(cluster); ok {
		out = append(out, o.name)
	}
	var rest []string
	for _, m := range r.f.members.snapshot() {
		if m.name != r.f.node && m.verified && m.state.live() {
			rest = append(rest, m.name)
		}
	}
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	out = append(out, rest...)
	seen := map[string]bool{r.f.node: true}
	out = slices.DeleteFunc(out, func(n string) bool {
		drop := seen[n] || !r.f.members.usable(n)
		seen[n] = true
		return drop
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	recent := func(n string) bool { return time.Since(r.failedAt[n]) < 10*time.Second }
	slices.SortStableFunc(out, func(a, b string) int {
		switch ra, rb := recent(a), recent(b); {
		case ra == rb:
			return 0
		case rb:
			return -1
		}
		return 1
	})
	return out
}

func (r *replicator) result(node string, err error) {
	r.mu.Lock()
	if err != nil {
		r.failedAt[node] = time.Now()
	} else {
		delete(r.failedAt, node)
	}
	r.mu.Unlock()
}

func (r *replicator) pullSegment(ctx context.Context, cluster string) {
	defer r.wg.Done()
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		return
	}
	caughtUp := func() bool { return !r.f.haveVersion(cluster).less(r.target(cluster)) }
	for i, node := range r.candidates(cluster) {
		if i == 5 || caughtUp() || ctx.Err() != nil {
			break
		}
		err := r.f.pullSegmentFrom(ctx, node, cluster)
		r.result(node, err)
		if err != nil {
			r.f.log.Debug("pull segment", "remote", cluster, "from", node, "err", err)
		}
	}
	done := caughtUp()
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tracks[cluster]
	if t == nil {
		return
	}
	t.inflight = false
	if done {
		t.failures, t.behindSince = 0, time.Time{}
		return
	}
	t.failures++
	t.nextTry = time.Now().Add(r.f.cfg.Gossip.RetryInterval * time.Duration(min(t.failures, 10)))
}

// pullSegmentFrom pulls what this member lacks of a cluster's segment from
// one member and applies it: batches in order, or a full copy. Anything
// malformed, oversized, of an unknown protocol or not following this
// member's version is dropped and counted, and ends the pull.
func (f *Federation) pullSegmentFrom(ctx context.Context, node, cluster string) (err error) {
	client, err := f.client(node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Gossip.PullTimeout)
	defer cancel()
	start := f.haveVersion(cluster)
	kind := "delta"
	defer func() { f.countPull(kind, err) }()
	stream, err := client.PullSegment(ctx, &pb.PullSegmentRequest{
		Protocol: protocolVersion, Cluster: cluster, Epoch: start.epoch, Version: start.version,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errTransport, err)
	}
	var full *registry.SegmentData
	var want [2]int // services, endpoints of the full copy
	err = receive(f, stream, node, func(chunk *pb.SegmentChunk) error {
		for _, b := range chunk.GetBatches() {
			if full != nil {
				return refuse(dropMalformed, "batches inside a full copy from %s", node)
			}
			if err := f.applyReplica(cluster, func() error { return f.reg.ApplyBatch(cluster, batchFromPB(b)) }); err != nil {
				return replicaError(err, node)
			}
		}
		if h := chunk.GetFull(); h != nil {
			if full != nil {
				return refuse(dropMalformed, "two full copies in one pull from %s", node)
			}
			hdr, err := f.checkFullHeader(h, cluster, start)
			if err != nil {
				return err
			}
			full, kind = hdr, "full"
			want = [2]int{int(h.GetServices()), int(h.GetEndpoints())}
		}
		if len(chunk.GetServices())+len(chunk.GetEndpoints()) > 0 {
			if full == nil {
				return refuse(dropMalformed, "entries without a full-copy header from %s", node)
			}
			for _, s := range chunk.GetServices() {
				full.Services = append(full.Services, serviceFromPB(s))
			}
			for _, e := range chunk.GetEndpoints() {
				full.Endpoints = append(full.Endpoints, endpointFromPB(e))
			}
			if len(full.Services) > want[0] || len(full.Endpoints) > want[1] {
				return refuse(dropMalformed, "full copy from %s longer than its header", node)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if full != nil {
		if len(full.Services) != want[0] || len(full.Endpoints) != want[1] {
			return refuse(dropMalformed, "full copy from %s cut short: %d/%d services, %d/%d endpoints", node, len(full.Services), want[0], len(full.Endpoints), want[1])
		}
		if err := f.applyReplica(cluster, func() error { return f.reg.Replace(*full) }); err != nil {
			return replicaError(err, node)
		}
	}
	if now := f.haveVersion(cluster); start.less(now) {
		f.announceSegment(cluster, now)
	}
	return nil
}

func (f *Federation) checkFullHeader(h *pb.SegmentHeader, cluster string, have segVer) (*registry.SegmentData, error) {
	if h.GetCluster().GetName() != cluster {
		return nil, refuse(dropInvalid, "full copy of %q when %q was asked for", h.GetCluster().GetName(), cluster)
	}
	if err := validEpoch(h.GetEpoch()); err != nil {
		return nil, refuse(dropInvalid, "full copy: %v", err)
	}
	if v := (segVer{h.GetEpoch(), h.GetVersion()}); !have.less(v) {
		return nil, refuse(dropReplayed, "full copy at %s, this member holds %s", v, have)
	}
	if n := int(h.GetServices()) + int(h.GetEndpoints()); n > f.cfg.Limits.SegmentEntries {
		return nil, refuse(dropOversized, "full copy of %d entries, limit %d", n, f.cfg.Limits.SegmentEntries)
	}
	return &registry.SegmentData{Cluster: clusterFromPB(h.GetCluster()), Epoch: h.GetEpoch(), Version: h.GetVersion()}, nil
}

// applyReplica applies pulled data. The local cluster's segment is pulled
// only by followers; the check and the write happen under ownMu so that a
// promotion cannot slip in between.
func (f *Federation) applyReplica(cluster string, apply func() error) error {
	if cluster != f.cfg.Cluster.Name {
		return apply()
	}
	f.ownMu.Lock()
	defer f.ownMu.Unlock()
	if f.leading.Load() {
		return errLeading
	}
	defer f.follow()
	return apply()
}

var (
	errTransport = errors.New("federation: transport")
	errLeading   = errors.New("federation: this replica leads its cluster now")
)

// replicaError classifies the registry's refusal of pulled data: a batch
// that does not follow this member's version was replayed, anything else
// failed validation.
func replicaError(err error, node string) error {
	switch {
	case errors.Is(err, errLeading):
		return err
	case errors.Is(err, registry.ErrVersionGap):
		return refuse(dropReplayed, "from %s: %v", node, err)
	}
	return refuse(dropInvalid, "from %s: %v", node, err)
}

// countPull counts a pull, and the message it dropped if it failed on bad
// input.
func (f *Federation) countPull(kind string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		var we *wireError
		if errors.As(err, &we) {
			f.m.drop(we.reason)
			f.log.Warn("dropped replication message", "err", err)
		}
	}
	f.m.pulls.WithLabelValues(kind, result).Inc()
}

func (r *replicator) pullPolicies(ctx context.Context) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		r.polInflight = false
		r.mu.Unlock()
	}()
	v := r.f.pol.Vector()
	r.mu.Lock()
	for o, t := range r.polPending {
		if t <= v[o] {
			delete(r.polPending, o)
		}
	}
	if len(r.polPending) == 0 {
		clear(r.polSources)
		r.mu.Unlock()
		return
	}
	var src string
	var when time.Time
	for n, at := range r.polSources {
		if !r.f.members.usable(n) {
			delete(r.polSources, n)
			continue
		}
		recentFail := time.Since(r.failedAt[n]) < 10*time.Second
		if src == "" || (!recentFail && at.After(when)) {
			src, when = n, at
		}
	}
	delete(r.polSources, src)
	r.mu.Unlock()
	if src == "" {
		return
	}
	err := r.f.pullPoliciesFrom(ctx, src, v)
	r.result(src, err)
	if err != nil {
		r.f.log.Debug("pull policies", "from", src, "err", err)
	}
	r.wake()
}

// pullPoliciesFrom pulls the policy records this member lacks from one
// member and applies them.
func (f *Federation) pullPoliciesFrom(ctx context.Context, node string, have policy.Vector) (err error) {
	client, err := f.client(node)
	if err != nil {
		return err
	}
	defer func() { f.countPull("policies", err) }()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Gossip.PullTimeout)
	defer cancel()
	stream, err := client.PullPolicies(ctx, &pb.PullPoliciesRequest{Protocol: protocolVersion, Vector: vectorToPB(have)})
	if err != nil {
		return fmt.Errorf("%w: %w", errTransport, err)
	}
	var in policy.Sync
	var last bool
	err = receive(f, stream, node, func(chunk *pb.PolicyChunk) error {
		if last {
			return refuse(dropMalformed, "chunk after the last one from %s", node)
		}
		for _, p := range chunk.GetPolicies() {
			in.Records = append(in.Records, policyFromPB(p))
		}
		if chunk.GetLast() {
			last = true
			in.Vector, in.Horizon, in.Full = vectorFromPB(chunk.GetVector()), policy.Timestamp(chunk.GetHorizon()), chunk.GetFull()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !last {
		return refuse(dropMalformed, "policy pull from %s cut short", node)
	}
	res, err := f.pol.Apply(ctx, in)
	if err != nil {
		return err
	}
	if res.Rejected > 0 {
		f.m.dropped.WithLabelValues(dropInvalid).Add(float64(res.Rejected))
		f.m.droppedTotal.Add(int64(res.Rejected))
		f.log.Warn("dropped policy records", "from", node, "count", res.Rejected, "first", errors.Join(res.Errors...))
	}
	if res.Applied > 0 {
		newest := policy.Vector{}
		for _, r := range in.Records {
			newest.Merge(policy.Vector{r.Origin: r.Stamp})
		}
		for o, t := range newest {
			f.announcePolicy(o, t)
		}
	}
	return nil
}

// client returns a Federation client for a member.
func (f *Federation) client(node string) (pb.FederationClient, error) {
	m, ok := f.members.get(node)
	if !ok {
		return nil, fmt.Errorf("federation: unknown member %s", node)
	}
	conn, err := f.conns.get(m.meta.GetGrpcAddr())
	if err != nil {
		return nil, err
	}
	return pb.NewFederationClient(conn), nil
}

// versioned is a reply message: it carries the protocol version.
type versioned[T any] interface {
	*T
	proto.Message
	GetProtocol() uint32
}

// receive reads a reply stream to its end and hands each message to fn,
// after checking its protocol version and the running total of bytes
// against Limits.PullBytes.
func receive[T any, PT versioned[T]](f *Federation, s grpc.ServerStreamingClient[T], node string, fn func(PT) error) error {
	var total int64
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errTransport, err)
		}
		msg := PT(m)
		if total += int64(proto.Size(msg)); total > f.cfg.Limits.PullBytes {
			return refuse(dropOversized, "reply from %s exceeds %d bytes", node, f.cfg.Limits.PullBytes)
		}
		if msg.GetProtocol() != protocolVersion {
			return refuse(dropUnknownVersion, "protocol %d from %s", msg.GetProtocol(), node)
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
}

// announceSegment tells the federation that this member holds a cluster's
// segment at v.
func (f *Federation) announceSegment(cluster string, v segVer) {
	msg := encode(msgSegmentAnnounce, &pb.SegmentAnnounce{Cluster: cluster, Epoch: v.epoch, Version: v.version, Holder: f.node})
	f.bcast.QueueBroadcast(&broadcast{name: "s/" + cluster, msg: msg})
}

// announcePolicy tells the federation that this member holds origin's
// writes up to stamp.
func (f *Federation) announcePolicy(origin string, stamp policy.Timestamp) {
	msg := encode(msgPolicyAnnounce, &pb.PolicyAnnounce{Origin: origin, Stamp: uint64(stamp), Holder: f.node})
	f.bcast.QueueBroadcast(&broadcast{name: "p/" + origin, msg: msg})
}
