package federation

import "context"

// APIAddr is the API address this replica advertises (Config.APIAddr,
// its host filled in), "" when none was given.
func (f *Federation) APIAddr() string { return f.apiAddr }

// Leader returns the replica that leads this cluster and the API address
// it advertises (Config.APIAddr; "" when it gave none): this replica
// itself while it leads, else the live, verified leader gossip knows of.
// ok is false while no leader is known, during an election.
func (f *Federation) Leader() (node, apiAddr string, ok bool) {
	if f.leading.Load() {
		return f.node, f.apiAddr, true
	}
	m, ok := f.members.owner(f.cfg.Cluster.Name)
	if !ok || m.name == f.node {
		return "", "", false
	}
	return m.name, m.meta.GetApiAddr(), true
}

// watchFollower counts the writes to the local segment that happen while
// this replica follows and that the federation did not make: only the
// leader runs the local sources (Config.OnLead), so a follower's copy
// changes only by pulls from the leader. A write here means a source runs
// outside OnLead; the leader's next epoch overwrites it, but until then
// this replica serves endpoints nobody else has.
func (f *Federation) watchFollower(ctx context.Context) {
	sub := f.reg.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Ready():
			sub.Take()
		}
		f.ownMu.Lock()
		now := f.haveVersion(f.cfg.Cluster.Name)
		foreign := !f.leading.Load() && now != f.followed
		if foreign {
			f.followed = now
		}
		f.ownMu.Unlock()
		if foreign {
			f.m.followerWrites.Inc()
			f.log.Error("the local segment changed while this replica follows: a discovery source runs outside the leader", "segment", now.String())
		}
	}
}

// follow records the local segment as the federation leaves it while
// following. Callers hold ownMu.
func (f *Federation) follow() { f.followed = f.haveVersion(f.cfg.Cluster.Name) }
