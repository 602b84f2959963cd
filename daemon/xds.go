package daemon

import (
	"context"

	xdsserver "github.com/meridian-mesh/meridian/xds/server"
)

// Wired by the xDS helper (package xds/server).

// wireXDS serves xDS — aggregated discovery, state of the world and delta
// — on the shared gRPC server, and /debug/xds?proxy=ID on the admin
// server. Proxies without a cluster in their node metadata are taken to
// be this cluster's. The policy pipeline hands it the compiled policies
// (wirePolicy, through d.XDS).
func wireXDS(_ context.Context, d *Daemon) error {
	srv, err := xdsserver.New(xdsserver.Config{Registry: d.Registry, Cluster: d.Config.Cluster.Name, Logger: d.Log, Metrics: d.Metrics})
	if err != nil {
		return err
	}
	srv.Register(d.GRPC)
	d.Admin.Handle("GET /debug/xds", srv.DebugHandler())
	d.XDS = srv
	d.Go("xds", srv.Run)
	return nil
}
