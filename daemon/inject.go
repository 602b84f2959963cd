package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// wireInject serves the sidecar-injection webhook when it is enabled, with
// a serving certificate from the mesh CA: the intermediate the trust
// component keeps in etcd, the roots of its bundle. /readyz waits until the
// webhook configuration carries the CA bundle.
func wireInject(ctx context.Context, d *Daemon) error {
	s := d.Config.Inject
	if !s.Enabled {
		return nil
	}
	if d.Trust == nil {
		return errors.New("inject: the webhook's certificate comes from the mesh CA: enable trust too (trust.enabled, --trust)")
	}
	sealer, err := ca.LoadSealer(d.Config.Trust.KeyFile)
	if err != nil {
		return err
	}
	td := d.Trust.Authority.TrustDomain()
	roots := func() []*x509.Certificate {
		if b, ok := d.Trust.Bundles.Get(td); ok {
			return b.X509Authorities()
		}
		return nil
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
		Settings: s, Cluster: d.Config.Cluster.Name, ServerID: d.Trust.MemberID(), Roots: roots, Kube: client, Logger: d.Log, Metrics: d.Metrics,
		CA: inject.StoreCA(ca.NewStore(d.Store.Client, d.Store.Key("trust"), sealer), roots),
	})
	if err != nil {
		return err
	}
	d.OnClose(srv.Close)
	d.Go("inject", srv.Run)
	d.AddReadyCheck("inject", srv.Ready)
	return nil
}
