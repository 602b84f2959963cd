package daemon

import (
	"context"

	"github.com/meridian-mesh/meridian/ui"
)

// wireUI serves the mesh dashboard at /ui/ on the admin server, with live
// request rates when proxies' metrics endpoints or a Prometheus are
// configured.
func wireUI(_ context.Context, d *Daemon) error {
	cfg := ui.Config{
		Registry: d.Registry, Cluster: d.Config.Cluster.Name, Logger: d.Log,
		Policies: func() ui.Policies {
			if d.PolicyAPI == nil {
				return nil
			}
			return d.PolicyAPI
		},
	}
	if s := d.Config.UI; len(s.MetricsTargets) > 0 || s.PrometheusURL != "" {
		cfg.Traffic = ui.NewTraffic(ui.TrafficConfig{Targets: s.MetricsTargets, PrometheusURL: s.PrometheusURL, Logger: d.Log})
		d.Go("ui-traffic", cfg.Traffic.Run)
	}
	h, err := ui.New(cfg)
	if err != nil {
		return err
	}
	d.Admin.Handle("/ui/", h)
	return nil
}
