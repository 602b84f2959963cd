package daemon

import (
	"context"

	"github.com/meridian-mesh/meridian/discovery/workload"
)

// wireWorkload serves the Workload API on the shared gRPC server; its
// registrations are loaded from etcd before New returns.
func wireWorkload(ctx context.Context, d *Daemon) error {
	w, err := workload.New(ctx, workload.Config{
		Cluster: d.Config.Cluster.Name, Registry: d.Registry, Store: d.Store, Log: d.Log, Metrics: d.Metrics,
		DefaultTTL: d.Config.Workload.DefaultTTL.Duration, Grace: d.Config.Workload.Grace.Duration,
	})
	if err != nil {
		return err
	}
	w.Register(d.GRPC)
	d.Go("workload", w.Run)
	return nil
}
