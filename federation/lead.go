package federation

import (
	"context"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/meridian-mesh/meridian/registry"
)

// leadLoop makes this replica campaign for its cluster's leadership (etcd
// election under /meridian/federation/leader) and lead while it holds it.
// Without a store it leads at once, alone.
func (f *Federation) leadLoop(ctx context.Context) error {
	if f.cfg.Store == nil {
		f.lead(ctx, nil)
		return nil
	}
	backoff := f.cfg.Gossip.RetryInterval
	for ctx.Err() == nil {
		if err := f.campaign(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("leader election", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
		}
	}
	return nil
}

// campaign waits to be elected, leads until the lease is lost or ctx ends,
// then steps down: resigning at once, so that another replica takes over
// without waiting for the lease to expire.
func (f *Federation) campaign(ctx context.Context) error {
	client := f.cfg.Store.Client
	ttl := max(int(f.cfg.Gossip.LeaseTTL/time.Second), 1)
	s, err := concurrency.NewSession(client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer func() {
		s.Orphan()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = client.Revoke(rctx, s.Lease())
	}()
	e := concurrency.NewElection(s, f.cfg.Store.Key("federation", "leader"))
	if err := e.Campaign(ctx, f.node); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			f.log.Warn("lost the etcd lease; stepping down")
			cancel()
		case <-lctx.Done():
		}
	}()
	f.lead(lctx, e)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer rcancel()
	_ = e.Resign(rctx)
	return nil
}

// lead makes this replica the writer of its cluster's segment until ctx
// ends: it restores the segment under a new epoch, runs OnLead, persists
// and announces every change, then hands back.
func (f *Federation) lead(ctx context.Context, e *concurrency.Election) {
	var ps *segmentStore
	var fence clientv3.Cmp
	if e != nil {
		ps = &segmentStore{client: f.cfg.Store.Client, prefix: f.cfg.Store.Key("registry") + "/"}
		fence = clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev())
	}
	epoch, err := f.promote(ctx, ps, fence)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Error("taking the lead", "err", err)
		}
		return
	}
	f.log.Info("leading the cluster", "epoch", epoch)
	var wg sync.WaitGroup
	if f.cfg.OnLead != nil {
		wg.Add(1)
		go func() { defer wg.Done(); f.cfg.OnLead(ctx) }()
	}
	f.own(ctx, ps, fence, epoch)
	wg.Wait()
	f.ownMu.Lock()
	f.leading.Store(false)
	f.follow()
	f.ownMu.Unlock()
	f.m.leader.Set(0)
	f.hurryMeta()
	f.log.Info("stepped down")
}

// promote installs the local segment under a new epoch: the fresher of
// what etcd holds and what this replica holds (a follower's copy of the
// previous leader's segment can be ahead of etcd), so nothing the previous
// leader published is lost. When local sources wrote the segment in this
// process before any federation epoch (epoch 0), they are the truth and
// nothing is restored over them.
func (f *Federation) promote(ctx context.Context, ps *segmentStore, fence clientv3.Cmp) (uint64, error) {
	name := f.cfg.Cluster.Name
	var data registry.SegmentData
	epoch := uint64(time.Now().UnixMilli())
	if ps != nil {
		var stored segVer
		var err error
		if data, stored, err = ps.load(ctx); err != nil {
			return 0, err
		}
		if mine := f.reg.View().Segment(name); mine != nil && (stored.less(segVer{mine.Epoch(), mine.Version()}) || mine.Epoch() == 0 && mine.Version() > 0) {
			data = mine.Data()
		}
		if epoch, err = ps.nextEpoch(ctx, fence); err != nil {
			return 0, err
		}
	} else if mine := f.reg.View().Segment(name); mine != nil {
		data = mine.Data()
	}
	f.ownMu.Lock()
	err := f.reg.Replace(registry.SegmentData{Cluster: f.cfg.Cluster, Epoch: epoch, Services: data.Services, Endpoints: data.Endpoints})
	if err == nil {
		f.leading.Store(true)
	}
	f.ownMu.Unlock()
	if err != nil {
		return 0, err
	}
	f.m.leader.Set(1)
	f.hurryMeta()
	if ps != nil {
		if err := ps.writeAll(ctx, fence, f.reg.View().Segment(name)); err != nil {
			f.log.Warn("persisting the segment", "err", err)
		}
	}
	f.announceSegment(name, segVer{epoch, 0})
	return epoch, nil
}

// own persists and announces every change to the local segment while this
// replica leads. Persistence is for a fast restart, not a gate: when etcd
// is slow or down, changes are announced anyway and persisted later.
func (f *Federation) own(ctx context.Context, ps *segmentStore, fence clientv3.Cmp, epoch uint64) {
	name := f.cfg.Cluster.Name
	sub := f.reg.Subscribe()
	defer sub.Close()
	persisted, announced := uint64(0), uint64(0)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Ready():
			sub.Take()
		case <-retry.C:
		}
		seg := f.reg.View().Segment(name)
		if seg == nil || seg.Epoch() != epoch {
			continue
		}
		v := seg.Version()
		if ps != nil && v > persisted {
			var err error
			if batches, ok := f.reg.ChangesSince(name, epoch, persisted); ok && len(batches) > 0 {
				err = ps.writeBatches(ctx, fence, batches)
				v = batches[len(batches)-1].Version
			} else {
				err = ps.writeAll(ctx, fence, seg)
			}
			switch {
			case errors.Is(err, errNotLeader):
				f.log.Warn("persisting the segment: no longer the leader")
			case err != nil && ctx.Err() == nil:
				f.log.Warn("persisting the segment", "err", err)
				retry.Reset(f.cfg.Gossip.RetryInterval)
			case err == nil:
				persisted = v
			}
		}
		if v > announced {
			announced = v
			f.announceSegment(name, segVer{epoch, v})
		}
	}
}
