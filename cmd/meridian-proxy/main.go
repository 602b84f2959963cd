package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meridian-mesh/meridian/sidecar"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := newCommand()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meridian-proxy:", err)
		return 1
	}
	return 0
}

func newCommand() *cobra.Command {
	var o sidecar.Options
	cmd := &cobra.Command{
		Use:   "meridian-proxy",
		Short: "Meridian's data plane: sidecar and gateways",
		Long: `meridian-proxy runs the configuration meridiand sends it over xDS (the same
resources Envoy would get): listeners, routes, clusters, endpoints and
secrets. As a sidecar it terminates and originates mTLS for its workload;
as a gateway it takes traffic into the mesh (ingress), out of it (egress),
or between networks (east-west).`,
		Example: `  # A sidecar in a pod (the injector sets this up; iptables capture traffic;
  # xDS over TLS, meridiand verified by its SPIFFE ID, the pod attested by its token):
  meridian-proxy --mode=sidecar --xds-address=meridiand.meridian-system.svc:15011 --cluster=eks-use1 \
    --xds-ca=/var/run/secrets/meridian/xds/roots.pem --xds-server-id=spiffe://mesh.example/meridian/cluster/eks-use1 \
    --xds-token-file=/var/run/secrets/meridian/xds/token

  # A sidecar without capture, for a process on a laptop or a VM:
  meridian-proxy --xds-address=127.0.0.1:15010 --cluster=onprem-dc1 --namespace=shop \
    --service-account=web --locality=onprem-east/dc1-a \
    --inbound=0.0.0.0:15006=8080 --upstream=127.0.0.1:9001=reviews.shop.svc.cluster.local:9080

  # On a VM, with its own SVID from meridiand's CA service (a join token from
  # meridianctl trust join-token --namespace shop --service-account web, the
  # roots from meridianctl trust bundle --pem-dir), xDS over TLS with it:
  meridian-proxy --xds-address=meridiand:15011 --xds-tls --ca-url=https://meridiand:15012 \
    --join-token-file=web.token --root-cert=cluster.local.pem --cluster=onprem-dc1 \
    --namespace=shop --service-account=web --inbound=0.0.0.0:15006=8080

  # An ingress gateway terminating TLS with its own certificate:
  meridian-proxy --mode=ingress --xds-address=meridiand:15010 --cluster=eks-use1 \
    --gateway-cert=tls.crt --gateway-key=tls.key`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, closer, err := o.Config(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closer.Close()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			p, err := sidecar.New(ctx, cfg)
			if err != nil {
				return err
			}
			// A second signal kills at once.
			go func() { <-ctx.Done(); stop() }()
			return p.Run(ctx)
		},
	}
	o.BindFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}
