package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
)

// MemberState is a member's state as the failure detector sees it.
type MemberState string

const (
	MemberAlive   MemberState = "alive"
	MemberSuspect MemberState = "suspect"
	MemberDead    MemberState = "dead"
	MemberLeft    MemberState = "left"
)

func (s MemberState) live() bool { return s == MemberAlive || s == MemberSuspect }

// member is what this member knows of another (or of itself).
type member struct {
	name      string
	meta      *pb.Meta
	addr      string // gossip host:port
	state     MemberState
	since     time.Time // of the state
	lastAlive time.Time
	verified  bool
	verifying bool
	retryAt   time.Time
}

// memberTable is this member's view of the federation, fed by memberlist's
// events and polled for suspicion (memberlist has no event for it). Every
// method is safe for concurrent use and never blocks on I/O: the
// memberlist callbacks call it with memberlist's own locks held.
type memberTable struct {
	f  *Federation
	mu sync.Mutex
	m  map[string]*member
	// heard is the newest heartbeat of every member, known or not yet.
	heard map[string]heard
	// refusedAt rate-limits the split-brain log: memberlist repeats a
	// refused alive message with every gossip round.
	refusedAt map[string]time.Time
	kick      chan struct{} // wakes verifyLoop
}

func newMemberTable(f *Federation) *memberTable {
	return &memberTable{f: f, m: map[string]*member{}, heard: map[string]heard{}, refusedAt: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

type heard struct {
	seq     uint64
	at      time.Time
	leaving bool
}

// heartbeat records a member's heartbeat and reports whether it is newer
// than any heard before (then it is passed on).
func (t *memberTable) heartbeat(node string, seq uint64, leaving bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.heard[node]
	if seq <= h.seq {
		return false
	}
	t.heard[node] = heard{seq: seq, at: time.Now(), leaving: leaving}
	if m := t.m[node]; m != nil && leaving && m.state == MemberDead {
		m.state = MemberLeft
	}
	return true
}

// conflict returns the member that holds meta's cluster under another
// cluster identity, if any live one does. Callers hold t.mu.
func (t *memberTable) conflict(name string, meta *pb.Meta) (string, bool) {
	f := t.f
	if meta.GetCluster() == f.cfg.Cluster.Name && name != f.node && !bytes.Equal(meta.GetClusterId(), f.clusterID) {
		return f.node, true
	}
	for n, m := range t.m {
		if n == name || !m.state.live() {
			continue
		}
		if m.meta.GetCluster() == meta.GetCluster() && !bytes.Equal(m.meta.GetClusterId(), meta.GetClusterId()) {
			return n, true
		}
	}
	return "", false
}

// admit checks a member's alive message: valid metadata, a name under its
// cluster, and no split brain.
func (t *memberTable) admit(n *memberlist.Node) error {
	if n.Name == t.f.node {
		return nil
	}
	msg, err := decodeGossip(n.Meta, memberlist.MetaMaxSize)
	if err == nil {
		if _, ok := msg.(*pb.Meta); !ok {
			err = refuse(dropMalformed, "metadata holds message %T", msg)
		}
	}
	if err == nil {
		meta := msg.(*pb.Meta)
		if verr := validNodeName(n.Name); verr != nil || clusterOf(n.Name) != meta.GetCluster() {
			err = refuse(dropInvalid, "node %q does not belong to cluster %q", n.Name, meta.GetCluster())
		} else {
			t.mu.Lock()
			holder, bad := t.conflict(n.Name, meta)
			t.mu.Unlock()
			if bad {
				err = refuse(dropSplitBrain, "cluster %q is already held by %s under another cluster identity", meta.GetCluster(), holder)
			}
		}
	}
	if err != nil {
		t.f.m.drop(reasonOf(err))
		t.logRefusal(n.Name, err)
	}
	return err
}

func (t *memberTable) logRefusal(name string, err error) {
	t.mu.Lock()
	last := t.refusedAt[name]
	now := time.Now()
	if now.Sub(last) > time.Minute {
		t.refusedAt[name] = now
	}
	t.mu.Unlock()
	if now.Sub(last) > time.Minute {
		t.f.log.Warn("refused member", "member", name, "err", err)
	}
}

// upsert records a member that is alive, with its metadata.
func (t *memberTable) upsert(n *memberlist.Node) {
	msg, err := decodeGossip(n.Meta, memberlist.MetaMaxSize)
	meta, ok := msg.(*pb.Meta)
	if err != nil || !ok {
		return // admit refused it already
	}
	now := time.Now()
	t.mu.Lock()
	m := t.m[n.Name]
	if m == nil || !bytes.Equal(m.meta.GetClusterId(), meta.GetClusterId()) {
		m = &member{name: n.Name, verified: t.f.cfg.Authenticator == nil || n.Name == t.f.node}
		t.m[n.Name] = m
	}
	if m.state != MemberAlive {
		m.state, m.since = MemberAlive, now
	}
	m.meta, m.addr, m.lastAlive = meta, n.Address(), now
	if h := t.heard[n.Name]; h.at.Before(now) {
		h.at, h.leaving = now, false
		t.heard[n.Name] = h
	}
	verified := m.verified
	t.mu.Unlock()
	if !verified {
		t.wake()
		return
	}
	t.f.repl.observeMeta(n.Name, meta)
}

// gone records a member declared dead, or that left: memberlist does not
// say which (its Node.State is not filled in), the member's last heartbeat
// does.
func (t *memberTable) gone(n *memberlist.Node) {
	t.mu.Lock()
	state := MemberDead
	if t.heard[n.Name].leaving {
		state = MemberLeft
	}
	if m := t.m[n.Name]; m != nil && m.state != state {
		m.state, m.since = state, time.Now()
	}
	t.mu.Unlock()
}

// poll folds memberlist's current view into the table: members it lists
// are alive, or suspect when not heard from for SuspectAfter; dead and left
// come as events.
func (t *memberTable) poll(nodes []*memberlist.Node, now time.Time) {
	listed := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		listed[n.Name] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, m := range t.m {
		if !listed[name] || !m.state.live() {
			continue
		}
		last := t.heard[name].at
		if name == t.f.node {
			last = now
		}
		m.lastAlive = last
		st := MemberAlive
		if now.Sub(last) > t.f.cfg.Gossip.SuspectAfter {
			st = MemberSuspect
		}
		if m.state != st {
			m.state, m.since = st, now
		}
	}
}

// forget removes members gone for longer than ForgetAfter and returns the
// clusters left without any member.
func (t *memberTable) forget(now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []string
	for name, m := range t.m {
		if !m.state.live() && now.Sub(m.since) > t.f.cfg.Gossip.ForgetAfter {
			delete(t.m, name)
			delete(t.heard, name)
			gone = append(gone, m.meta.GetCluster())
		}
	}
	var empty []string
	for _, c := range gone {
		if !slices.ContainsFunc(t.list(), func(m member) bool { return m.meta.GetCluster() == c }) && !slices.Contains(empty, c) {
			empty = append(empty, c)
		}
	}
	return empty
}

// list returns copies of every member. Callers hold t.mu.
func (t *memberTable) list() []member {
	out := make([]member, 0, len(t.m))
	for _, m := range t.m {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.name, b.name) })
	return out
}

// snapshot returns copies of every member, sorted by name.
func (t *memberTable) snapshot() []member {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.list()
}

// names returns the names of every member known, dead ones included: the
// origins whose writes this member must hold before it may claim a
// policy horizon.
func (t *memberTable) names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.m))
	for n := range t.m {
		out = append(out, n)
	}
	return out
}

// get returns a copy of one member.
func (t *memberTable) get(name string) (member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[name]
	if !ok {
		return member{}, false
	}
	return *m, true
}

// usable reports whether a member is live and verified: one to pull from
// and to take announcements from.
func (t *memberTable) usable(name string) bool {
	m, ok := t.get(name)
	return ok && m.verified && m.state.live()
}

// owner returns the member that speaks for a cluster: its live, verified
// leader with the newest epoch.
func (t *memberTable) owner(cluster string) (member, bool) {
	var best member
	found := false
	for _, m := range t.snapshot() {
		if m.meta.GetCluster() != cluster || m.meta.GetRole() != pb.Role_ROLE_LEADER || !m.state.live() || !m.verified {
			continue
		}
		if !found || m.meta.GetEpoch() > best.meta.GetEpoch() {
			best, found = m, true
		}
	}
	return best, found
}

// rejoinAddrs lists seeds and members that died (not left) and are not
// forgotten, unless they are alive now.
func (t *memberTable) rejoinAddrs(seeds []string, self string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	alive := map[string]bool{self: true}
	for _, m := range t.m {
		if m.state.live() {
			alive[m.addr] = true
		}
	}
	var out []string
	for _, s := range seeds {
		if !alive[s] && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, m := range t.m {
		if m.state == MemberDead && !alive[m.addr] && !slices.Contains(out, m.addr) {
			out = append(out, m.addr)
		}
	}
	return out
}

// horizon is the policy horizon every known member has reached: the
// smallest coverage advertised, dead members included until forgotten.
func (t *memberTable) horizon() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var h uint64
	first := true
	for name, m := range t.m {
		v := m.meta.GetPolicyHorizon()
		if name == t.f.node {
			v = t.f.horizon.Load()
		}
		if first || v < h {
			h, first = v, false
		}
	}
	return h
}

func (t *memberTable) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// verifyLoop checks the identity of new members when an Authenticator is
// configured: it calls Identify over the member's federation gRPC, and
// the member counts only once the TLS identity matches the cluster it
// claims. Without an Authenticator every member is verified on sight.
func (t *memberTable) verifyLoop(ctx context.Context) {
	if t.f.cfg.Authenticator == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-tick.C:
		}
		now := time.Now()
		t.mu.Lock()
		var todo []member
		for _, m := range t.m {
			if !m.verified && !m.verifying && m.state.live() && now.After(m.retryAt) {
				m.verifying = true
				todo = append(todo, *m)
			}
		}
		t.mu.Unlock()
		for _, m := range todo {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := t.f.verify(ctx, m)
				t.mu.Lock()
				if cur := t.m[m.name]; cur != nil {
					cur.verifying = false
					cur.verified = err == nil
					cur.retryAt = time.Now().Add(5 * time.Second)
				}
				t.mu.Unlock()
				if err != nil {
					t.f.m.drop(dropUnverified)
					t.logRefusal(m.name, err)
					return
				}
				t.f.log.Info("member verified", "member", m.name)
				t.f.repl.observeMeta(m.name, m.meta)
			}()
		}
	}
}

// verify asks a member who it is and checks the TLS identity it proved.
func (f *Federation) verify(ctx context.Context, m member) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Gossip.PullTimeout)
	defer cancel()
	client, err := f.client(m.name)
	if err != nil {
		return err
	}
	var p peer.Peer
	resp, err := client.Identify(ctx, &pb.IdentifyRequest{Protocol: protocolVersion, Node: f.node}, grpc.Peer(&p))
	if err != nil {
		return fmt.Errorf("identify %s: %w", m.name, err)
	}
	if resp.GetNode() != m.name {
		return fmt.Errorf("%s answers as %q", m.meta.GetGrpcAddr(), resp.GetNode())
	}
	return f.cfg.Authenticator.Authenticate(m.meta.GetCluster(), tlsState(p.AuthInfo))
}

// tlsState returns the TLS state of a connection, empty without TLS.
func tlsState(ai credentials.AuthInfo) tls.ConnectionState {
	if ti, ok := ai.(credentials.TLSInfo); ok {
		return ti.State
	}
	return tls.ConnectionState{}
}
