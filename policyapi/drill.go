package policyapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// Live drills. A drill lives in two records:
//
//   - /meridian/drills/ID in the etcd of the cluster it was started
//     through, bound to a lease the client keeps alive (through RunDrill's
//     heartbeats). This is its life: when the duration ends, the client
//     stops it, or the client dies and its heartbeats stop, the lease ends
//     and etcd deletes the key.
//   - a "Drill" resource (mesh-scoped) in the replicated policy store, so
//     that every cluster drains the target: a region drill moves the
//     traffic of clients everywhere. When the lease key goes, its cluster
//     deletes the resource (reapDrills), and the delete replicates.
//
// The resource also carries RenewBy, rewritten while the lease lives; a
// cluster ignores a drill whose RenewBy passed, so a drill still ends
// everywhere if the cluster holding its lease dies with it. (Clocks of
// control planes are assumed to agree within a lease TTL.)

// drillKind is the policy store kind of drill records. It is not a kind of
// api/v1alpha1: users start drills, they do not write them.
const drillKind = "Drill"

// staleDrill: a drill record whose RenewBy passed this long ago is deleted
// by any cluster (its own cluster would have deleted it, unless gone).
const staleDrill = time.Minute

type drill struct {
	ID      string          `json:"-"`
	Target  locality.Target `json:"target"`
	Cluster string          `json:"cluster"`
	Started time.Time       `json:"started"`
	Ends    time.Time       `json:"ends"`
	RenewBy time.Time       `json:"renewBy"`
}

func (d drill) key() policy.Key { return policy.Key{Kind: drillKind, Name: d.ID} }

// active reports whether the drill drains its target at now.
func (d drill) active(now time.Time) bool { return now.Before(d.RenewBy) && now.Before(d.Ends) }

// drillsIn returns the drill records of a snapshot; damaged ones are
// logged and skipped.
func (s *Server) drillsIn(snap *policy.Snapshot) []drill {
	var out []drill
	for _, r := range snap.List(drillKind) {
		var d drill
		if err := json.Unmarshal(r.Spec, &d); err != nil {
			s.log.Warn("drill record ignored", "key", r.Key.String(), "err", err)
			continue
		}
		d.ID = r.Name
		out = append(out, d)
	}
	return out
}

// activeDrains returns the targets of the active drills, sorted and
// without repeats, and the next instant one of them ends (zero if none).
func activeDrains(ds []drill, now time.Time) ([]locality.Target, time.Time) {
	var out []locality.Target
	var wake time.Time
	for _, d := range ds {
		if !d.active(now) {
			continue
		}
		if !slices.Contains(out, d.Target) {
			out = append(out, d.Target)
		}
		end := d.RenewBy
		if d.Ends.Before(end) {
			end = d.Ends
		}
		if wake.IsZero() || end.Before(wake) {
			wake = end
		}
	}
	slices.SortFunc(out, func(a, b locality.Target) int { return strings.Compare(a.String(), b.String()) })
	return out, wake
}

// target parses and checks a drill target against the mesh: the region,
// zone or cluster must exist.
func target(v *registry.View, kind, name string) (locality.Target, error) {
	t, err := locality.ParseTarget(kind, name)
	if err != nil {
		return t, &RefusedError{Violations: []Violation{{Field: "target", Description: strings.TrimPrefix(err.Error(), "locality: ")}}}
	}
	var known []string
	switch t.Kind {
	case locality.TargetRegion:
		known = locality.ContextOf(v).Regions
	case locality.TargetCluster:
		known = v.Clusters()
	case locality.TargetZone:
		for _, k := range v.ServiceKeys() {
			for _, e := range v.Endpoints(k) {
				z := e.Locality.Region + "/" + e.Locality.Zone
				if e.Locality.Zone != "" && !slices.Contains(known, z) {
					known = append(known, z)
				}
			}
		}
		slices.Sort(known)
	}
	if !slices.Contains(known, t.Name) {
		return t, &NotFoundError{What: fmt.Sprintf("%s %q (known: %s)", t.Kind, t.Name, strings.Join(known, ", "))}
	}
	return t, nil
}

// PlanDrill computes what taking a target down would do, with the engine
// in force, without touching traffic.
func (s *Server) PlanDrill(kind, name string) (locality.DrillReport, error) {
	v := s.cfg.Registry.View()
	t, err := target(v, kind, name)
	if err != nil {
		return locality.DrillReport{}, err
	}
	return s.Engine().WhatIf(v, t, nil), nil
}

// liveDrill is a drill this control plane started and holds the lease of.
type liveDrill struct {
	s     *Server
	rec   drill
	lease clientv3.LeaseID
}

// startDrill checks the target and duration, takes the lease, and writes
// both records. The caller must end it (end) or let the lease run out.
func (s *Server) startDrill(ctx context.Context, kind, name string, d time.Duration) (*liveDrill, error) {
	t, err := target(s.cfg.Registry.View(), kind, name)
	if err != nil {
		return nil, err
	}
	if d < time.Second || d > s.cfg.MaxDrillDuration {
		return nil, &RefusedError{Violations: []Violation{{Field: "duration", Description: fmt.Sprintf("%v: must be between 1s and %v", d, s.cfg.MaxDrillDuration)}}}
	}
	ttl := s.cfg.DrillLeaseTTL
	now := time.Now()
	l := &liveDrill{s: s, rec: drill{ID: drillID(t), Target: t, Cluster: s.cfg.Cluster, Started: now, Ends: now.Add(d), RenewBy: now.Add(ttl)}}
	lease, err := s.cfg.Etcd.Client.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("policyapi: drill lease: %w", err)
	}
	l.lease = lease.ID
	b, _ := json.Marshal(l.rec)
	if _, err := s.cfg.Etcd.Client.Put(ctx, s.drillKey(l.rec.ID), string(b), clientv3.WithLease(lease.ID)); err != nil {
		l.end(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("policyapi: drill record: %w", err)
	}
	if _, err := s.cfg.Policies.Put(ctx, l.rec.key(), b); err != nil {
		l.end(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("policyapi: drill record: %w", err)
	}
	s.m.drills.WithLabelValues("started").Inc()
	s.log.Info("live drill started", "drill", l.rec.ID, "target", t.String(), "ends", l.rec.Ends.Format(time.RFC3339))
	return l, nil
}

func (s *Server) drillKey(id string) string { return s.cfg.Etcd.Key("drills", id) }

// drillID names a drill after its target, unique enough to never collide:
// "region-us-east-1-3f9a1c".
func drillID(t locality.Target) string {
	var b strings.Builder
	for _, r := range strings.ToLower(string(t.Kind) + "-" + t.Name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('.')
		}
	}
	id := strings.Trim(b.String(), ".-")
	if len(id) > 200 {
		id = id[:200]
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	return id + "-" + hex.EncodeToString(suffix)
}

// keepAlive renews the lease, and the replicated record's RenewBy once
// half of it has passed. An error means the lease is gone: the drill is
// over. A renewal etcd does not answer is only logged: the next heartbeat
// tries again, and finds the lease gone if it ran out meanwhile.
func (l *liveDrill) keepAlive(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, l.s.cfg.DrillLeaseTTL/3)
	_, err := l.s.cfg.Etcd.Client.KeepAliveOnce(rctx, l.lease)
	cancel()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("policyapi: drill %s: lease lost: %w", l.rec.ID, err)
	case err != nil:
		l.s.log.Warn("drill lease not renewed; trying again at the next heartbeat", "drill", l.rec.ID, "err", err)
		return nil
	}
	ttl := l.s.cfg.DrillLeaseTTL
	if time.Until(l.rec.RenewBy) > ttl/2 {
		return nil
	}
	l.rec.RenewBy = time.Now().Add(ttl)
	b, _ := json.Marshal(l.rec)
	if _, err := l.s.cfg.Policies.Put(ctx, l.rec.key(), b); err != nil {
		return fmt.Errorf("policyapi: drill %s: renew: %w", l.rec.ID, err)
	}
	return nil
}

// end revokes the lease and deletes the replicated record: the target is
// restored everywhere.
func (l *liveDrill) end(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := l.s.cfg.Etcd.Client.Revoke(ctx, l.lease); err != nil {
		l.s.log.Warn("drill lease not revoked; it runs out on its own", "drill", l.rec.ID, "err", err)
	}
	l.s.deleteDrill(ctx, l.rec.ID)
}

func (s *Server) deleteDrill(ctx context.Context, id string) {
	_, err := s.cfg.Policies.Delete(ctx, drill{ID: id}.key())
	switch {
	case err == nil:
		s.m.drills.WithLabelValues("ended").Inc()
		s.log.Info("live drill ended", "drill", id)
	case !errors.Is(err, policy.ErrNotFound):
		s.log.Warn("drill record not deleted; other clusters drop it when its renewal is due", "drill", id, "err", err)
	}
}

// reapDrills deletes the replicated record of every drill whose lease
// ended: at once through an etcd watch on the lease keys, and by a sweep
// every lease TTL (after a restart, or a missed event). It also deletes
// records other clusters left behind long stale.
func (s *Server) reapDrills(ctx context.Context) error {
	prefix := s.cfg.Etcd.Key("drills") + "/"
	ticker := time.NewTicker(s.cfg.DrillLeaseTTL)
	defer ticker.Stop()
	s.sweepDrills(ctx, prefix)
	for {
		wch := s.cfg.Etcd.Client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithFilterPut())
	watching:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
				s.sweepDrills(ctx, prefix)
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break watching // watch again; the sweep covers the gap
				}
				for _, ev := range wr.Events {
					s.deleteDrill(ctx, strings.TrimPrefix(string(ev.Kv.Key), prefix))
				}
			}
		}
		s.sweepDrills(ctx, prefix)
	}
}

func (s *Server) sweepDrills(ctx context.Context, prefix string) {
	// The snapshot first: a record in it was written after its lease key,
	// so the key is seen below unless the lease has ended.
	ds := s.drillsIn(s.cfg.Policies.Snapshot())
	if len(ds) == 0 {
		return
	}
	resp, err := s.cfg.Etcd.Client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("drill sweep: etcd unavailable", "err", err)
		}
		return
	}
	live := map[string]bool{}
	for _, kv := range resp.Kvs {
		live[strings.TrimPrefix(string(kv.Key), prefix)] = true
	}
	now := time.Now()
	for _, d := range ds {
		if (d.Cluster == s.cfg.Cluster && !live[d.ID]) || now.Sub(d.RenewBy) > staleDrill {
			s.deleteDrill(ctx, d.ID)
		}
	}
}
