package daemon

import (
	"context"

	"github.com/meridian-mesh/meridian/trust/exchange"
)

// wireTrustExchange carries trust between clusters through the policy
// store (package trust/exchange): every replica merges the mesh's bundle
// updates and installs the intermediates the root holder re-signs for
// it; the leader publishes this cluster's trust state. It serves the
// RootRotation API (meridianctl trust rotate) on the shared gRPC server.
func wireTrustExchange(_ context.Context, d *Daemon) error {
	if d.Trust == nil {
		return nil
	}
	var apiAddr string // published for the other clusters: with federation only
	var reconnect func()
	if d.Federation != nil {
		apiAddr, reconnect = d.Federation.APIAddr(), d.Federation.Reconnect
	}
	x, err := exchange.New(exchange.Config{
		Trust: d.Trust, Cluster: d.Config.Cluster.Name, Store: d.Policies,
		Clusters: func() map[string]string {
			v := d.Registry.View()
			out := map[string]string{}
			for _, name := range v.Clusters() {
				out[name] = v.Status(name).State.String()
			}
			return out
		},
		Leading: d.Leading, Leader: d.leaderAPIAddr, APIAddr: apiAddr, Reissued: reconnect,
		Logger: d.Log, Metrics: d.Metrics,
	})
	if err != nil {
		return err
	}
	x.Register(d.GRPC)
	d.Go("trust-apply", x.RunApply)
	d.GoLeader("trust-publish", x.RunPublish)
	return nil
}
