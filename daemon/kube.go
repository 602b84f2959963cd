package daemon

import (
	"context"
	"errors"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/discovery/workload"
)

// wireKube runs Kubernetes discovery when it is enabled, while this
// replica leads its cluster; /readyz of the leader waits for the first
// full sync of its term.
func wireKube(_ context.Context, d *Daemon) error {
	if !d.Config.Kube.Enabled {
		return nil
	}
	src, err := kube.New(kube.Config{
		Cluster: d.Config.Cluster.Name, Kubeconfig: d.Config.Kube.Kubeconfig, Context: d.Config.Kube.Context,
		Namespace: d.Config.Kube.Namespace, Metrics: d.Metrics, Foreign: workload.Owns,
		Logger: d.baseLog, // the source adds component and cluster itself
	}, d.Registry)
	if err != nil {
		return err
	}
	d.GoLeader("kube", src.Run)
	d.AddReadyCheck("kube-synced", func(context.Context) error {
		if d.Leading() && !src.HasSynced() {
			return errors.New("informers have not synced with the API server yet")
		}
		return nil
	})
	return nil
}
