package daemon

import (
	"context"

	xdsserver "github.com/meridian-mesh/meridian/xds/server"
)

// Wired by the xDS helper (package xds/server).

// wireXDS serves xDS — aggregated discovery, state of the world and delta,
// and the proxy-config view for meridianctl — on the shared gRPC server,
// and /debug/xds?proxy=ID on the admin server. Proxies without a cluster
// in their node metadata are taken to be this cluster's. The policy
// pipeline hands it the compiled policies (wirePolicy, through d.XDS).
// With trust, proxies that prove their identity get their secrets over
// SDS and mTLS: a service-account token in Kubernetes, an SVID as TLS
// client certificate elsewhere, on the TLS xDS port (xdstls.go; see
// package xds/server).
func wireXDS(_ context.Context, d *Daemon) error {
	cfg := xdsserver.Config{Registry: d.Registry, Cluster: d.Config.Cluster.Name, Logger: d.Log, Metrics: d.Metrics}
	d.Config.XDS.Apply(&cfg)
	if t := d.Trust; t != nil {
		cfg.Secrets = t.SDS
		attestors := []xdsserver.Attestor{xdsserver.PeerSVID(t.Bundles)}
		if t.Kube != nil {
			attestors = append(attestors, xdsserver.KubeTokens(t.Kube))
		}
		cfg.Attestor = xdsserver.Attestors(attestors...)
	}
	srv, err := xdsserver.New(cfg)
	if err != nil {
		return err
	}
	srv.Register(d.GRPC)
	d.Admin.Handle("GET /debug/xds", srv.DebugHandler())
	d.XDS = srv
	d.Go("xds", srv.Run)
	return nil
}
