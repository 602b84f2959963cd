package daemon

import (
	"context"
	"errors"

	"github.com/meridian-mesh/meridian/discovery/workload"
)

// wireWorkload serves the Workload API on the shared gRPC server while
// this replica leads its cluster (each term loads the registrations from
// etcd); the other replicas answer Unavailable, naming the leader.
func wireWorkload(_ context.Context, d *Daemon) error {
	w, err := workload.New(workload.Config{
		Cluster: d.Config.Cluster.Name, Registry: d.Registry, Store: d.Store, Log: d.Log, Metrics: d.Metrics,
		DefaultTTL: d.Config.Workload.DefaultTTL.Duration, Grace: d.Config.Workload.Grace.Duration,
		Leader: d.leaderAPIAddr,
	})
	if err != nil {
		return err
	}
	w.Register(d.GRPC)
	d.GoLeader("workload", w.Run)
	d.AddReadyCheck("workload", func(context.Context) error {
		if d.Leading() && !w.Serving() {
			return errors.New("loading the workload registrations")
		}
		return nil
	})
	return nil
}
