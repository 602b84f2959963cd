package federation

import (
	"context"
	"time"

	"github.com/meridian-mesh/meridian/registry"
)

// statusLoop folds what gossip knows of each cluster's control plane into
// the registry, where View.EffectiveHealth turns it into endpoint health:
//
//	every member of the cluster dead    → Dead: its endpoints are unhealthy everywhere
//	every member left on purpose        → Left: as dead
//	its best member suspect             → Suspect: healthy endpoints turn stale
//	alive, but this member cannot bring → Unreachable: stale, with the age of
//	its copy up to date for StaleAfter     the last good copy
//	alive and up to date                → Alive
//
// A cluster is as alive as its best replica: while a follower lives, a dead
// leader is a hand-over, not an outage. It also forgets members gone for
// ForgetAfter, and clusters left with no member.
func (f *Federation) statusLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.Gossip.StatusInterval)
	defer t.Stop()
	set := map[string]registry.ClusterStatus{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f.refreshStatus(now, set)
		}
	}
}

type clusterAgg struct {
	state     MemberState
	lastAlive time.Time
	region    string
	network   string
}

var stateRank = map[MemberState]int{MemberAlive: 0, MemberSuspect: 1, MemberDead: 2, MemberLeft: 3}

func (f *Federation) refreshStatus(now time.Time, set map[string]registry.ClusterStatus) {
	nodes := f.ml.Load().Members()
	f.liveMembers.Store(int64(len(nodes)))
	f.members.poll(nodes, now)
	counts := map[MemberState]int{}
	aggs := map[string]*clusterAgg{}
	for _, m := range f.members.snapshot() {
		counts[m.state]++
		c := m.meta.GetCluster()
		if c == f.cfg.Cluster.Name || !m.verified {
			continue
		}
		a := aggs[c]
		if a == nil {
			a = &clusterAgg{state: m.state, region: m.meta.GetRegion(), network: m.meta.GetNetwork()}
			aggs[c] = a
		}
		if stateRank[m.state] < stateRank[a.state] {
			a.state = m.state
		}
		if m.lastAlive.After(a.lastAlive) {
			a.lastAlive = m.lastAlive
		}
	}
	for _, s := range []MemberState{MemberAlive, MemberSuspect, MemberDead, MemberLeft} {
		f.m.members.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	view := f.reg.View()
	for name, a := range aggs {
		if view.Segment(name) == nil {
			if err := f.reg.SetCluster(registry.Cluster{Name: name, Region: a.region, Network: a.network}); err != nil {
				f.log.Warn("adding cluster", "remote", name, "err", err)
				continue
			}
		}
		st := registry.ClusterStatus{LastSeen: a.lastAlive}
		switch a.state {
		case MemberAlive:
			st.State = registry.Alive
			if since, _ := f.repl.behind(name); !since.IsZero() && now.Sub(since) > f.cfg.Gossip.StaleAfter {
				st.State, st.LastSeen = registry.Unreachable, since
			}
		case MemberSuspect:
			st.State = registry.Suspect
		case MemberDead:
			st.State = registry.Dead
		case MemberLeft:
			st.State = registry.Left
		}
		if prev, ok := set[name]; ok && prev.State == st.State {
			continue
		}
		st.Since = now
		if err := f.reg.SetStatus(name, st); err != nil {
			f.log.Warn("cluster status", "remote", name, "err", err)
			continue
		}
		set[name] = st
		f.log.Info("cluster state", "remote", name, "state", st.State.String())
	}
	for _, name := range view.Clusters() {
		since, versions := f.repl.behind(name)
		lag := 0.0
		if !since.IsZero() {
			lag = now.Sub(since).Seconds()
		}
		f.m.lagVersions.WithLabelValues(name).Set(float64(versions))
		f.m.lagSeconds.WithLabelValues(name).Set(lag)
	}
	for _, c := range f.members.forget(now) {
		if c == f.cfg.Cluster.Name {
			continue
		}
		f.reg.RemoveCluster(c)
		delete(set, c)
		f.m.lagVersions.DeleteLabelValues(c)
		f.m.lagSeconds.DeleteLabelValues(c)
		f.log.Info("forgot cluster", "remote", c)
	}
}
