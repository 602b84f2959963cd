package federation

import (
	"github.com/hashicorp/memberlist"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
)

// delegate is the federation's side of memberlist's hooks. Memberlist
// calls them from its packet and stream loops, some with its node lock
// held: each one decodes, updates in-memory state under short locks and
// wakes a goroutine. None blocks on I/O or calls back into memberlist.
type delegate struct{ f *Federation }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.MergeDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// NodeMeta returns this member's metadata; its size was checked against
// the limit when it was built.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.f.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg receives an announcement.
func (d *delegate) NotifyMsg(buf []byte) {
	msg, err := decodeGossip(buf, d.f.cfg.Limits.GossipMessage)
	if err != nil {
		d.f.m.drop(reasonOf(err))
		d.f.log.Debug("dropped gossip message", "err", err)
		return
	}
	switch m := msg.(type) {
	case *pb.SegmentAnnounce:
		d.f.repl.segmentAnnounced(m)
	case *pb.PolicyAnnounce:
		d.f.repl.policyAnnounced(m)
	case *pb.Heartbeat:
		if m.GetNode() != d.f.node && d.f.members.heartbeat(m.GetNode(), m.GetSeq(), m.GetLeaving()) {
			d.f.beats.QueueBroadcast(&broadcast{name: "h/" + m.GetNode(), msg: append([]byte(nil), buf...)})
		}
	default:
		d.f.m.drop(dropInvalid)
		d.f.log.Debug("dropped gossip message", "err", "unexpected message type", "type", buf[1])
	}
}

// GetBroadcasts fills a gossip packet: announcements first, heartbeats in
// the room left.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	msgs := d.f.bcast.GetBroadcasts(overhead, limit)
	for _, m := range msgs {
		limit -= len(m) + overhead
	}
	return append(msgs, d.f.beats.GetBroadcasts(overhead, limit)...)
}

// LocalState is this member's part of a full state sync: what it holds of
// every segment and its policy vector.
func (d *delegate) LocalState(bool) []byte {
	f := d.f
	st := &pb.PushPullState{Node: f.node, PolicyVector: vectorToPB(f.pol.Vector())}
	v := f.reg.View()
	for _, c := range v.Clusters() {
		if seg := v.Segment(c); seg.Epoch() != 0 {
			st.Segments = append(st.Segments, &pb.SegmentVersion{Cluster: c, Epoch: seg.Epoch(), Version: seg.Version()})
		}
	}
	return encode(msgPushPull, st)
}

// MergeRemoteState takes another member's state: it learns which versions
// exist and where to pull them (anti-entropy for lost announcements).
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	msg, err := decodeGossip(buf, d.f.cfg.Limits.PushPullState)
	if err == nil {
		if _, ok := msg.(*pb.PushPullState); !ok {
			err = refuse(dropInvalid, "push/pull state holds %T", msg)
		}
	}
	if err != nil {
		d.f.m.drop(reasonOf(err))
		d.f.log.Debug("dropped push/pull state", "err", err)
		return
	}
	d.f.repl.mergeState(msg.(*pb.PushPullState))
}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.f.members.upsert(n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.f.members.upsert(n) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.f.members.gone(n) }

// NotifyAlive refuses members with bad metadata, and the split brain: a
// member claiming a cluster that a live member holds under another cluster
// identity.
func (d *delegate) NotifyAlive(n *memberlist.Node) error { return d.f.members.admit(n) }

// NotifyMerge refuses to merge with a group of members (a join, or two
// sides of a healed partition meeting) when one of them claims a cluster
// another identity holds here, so that the newcomer's Join fails loudly
// instead of two clusters fighting over one name.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	t := d.f.members
	for _, n := range peers {
		if n.Name == d.f.node || n.State == memberlist.StateDead || n.State == memberlist.StateLeft {
			continue
		}
		msg, err := decodeGossip(n.Meta, memberlist.MetaMaxSize)
		meta, ok := msg.(*pb.Meta)
		if err != nil || !ok {
			continue // NotifyAlive drops it on its own
		}
		t.mu.Lock()
		holder, bad := t.conflict(n.Name, meta)
		t.mu.Unlock()
		if bad {
			err := refuse(dropSplitBrain, "member %s claims cluster %q, held by %s under another cluster identity", n.Name, meta.GetCluster(), holder)
			d.f.m.drop(dropSplitBrain)
			t.logRefusal(n.Name, err)
			return err
		}
	}
	return nil
}

// NotifyConflict: two members use one name from different addresses (two
// replicas configured with the same replica name).
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.f.m.drop(dropSplitBrain)
	d.f.members.logRefusal(other.Name, refuse(dropSplitBrain, "name used from %s and %s: give each replica its own name", existing.Address(), other.Address()))
}
