package federation

import (
	"context"
	"time"

	"github.com/meridian-mesh/meridian/federation/policy"
)

// policyLoop announces this member's own policy writes and collects
// tombstones that every known member has reached.
func (f *Federation) policyLoop(ctx context.Context) {
	sub := f.pol.Subscribe()
	defer sub.Close()
	collect := time.NewTicker(f.cfg.Gossip.CollectInterval)
	defer collect.Stop()
	var announced policy.Timestamp
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Ready():
			snap, d := sub.Take()
			newest := announced
			for k := range d.Keys {
				if r, ok := snap.Lookup(k); ok && r.Origin == f.node && r.Stamp > newest {
					newest = r.Stamp
				}
			}
			if newest > announced {
				announced = newest
				f.announcePolicy(f.node, newest)
			}
			f.m.policies.WithLabelValues("live").Set(float64(snap.Len()))
			f.m.policies.WithLabelValues("tombstone").Set(float64(snap.Tombstones()))
		case <-collect.C:
			h := policy.Timestamp(f.members.horizon())
			if h == 0 {
				continue
			}
			n, err := f.pol.Collect(ctx, h)
			if err != nil && ctx.Err() == nil {
				f.log.Warn("collecting policy tombstones", "err", err)
			}
			if n > 0 {
				f.log.Debug("collected policy tombstones", "count", n, "horizon", h.String())
			}
		}
	}
}
