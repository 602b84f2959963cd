package daemon

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// wireInject serves the sidecar-injection webhook when it is enabled, with
// a serving certificate from the mesh CA's intermediate in etcd; /readyz
// waits until the webhook configuration carries the CA bundle.
func wireInject(ctx context.Context, d *Daemon) error {
	s := d.Config.Inject
	if !s.Enabled {
		return nil
	}
	sealer, err := ca.LoadSealer(s.TrustKeyFile)
	if err != nil {
		return err
	}
	var client kubernetes.Interface
	if s.WebhookName != "" {
		rc, err := kube.LoadRESTConfig(d.Config.Kube.Kubeconfig, d.Config.Kube.Context)
		if err != nil {
			return err
		}
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return fmt.Errorf("inject: %w", err)
		}
	}
	srv, err := inject.New(ctx, inject.Config{
		Settings: s, Cluster: d.Config.Cluster.Name, Kube: client, Logger: d.Log, Metrics: d.Metrics,
		CA: inject.StoreCA(ca.NewStore(d.Store.Client, d.Store.Key("trust"), sealer)),
	})
	if err != nil {
		return err
	}
	d.OnClose(srv.Close)
	d.Go("inject", srv.Run)
	d.AddReadyCheck("inject", srv.Ready)
	return nil
}
