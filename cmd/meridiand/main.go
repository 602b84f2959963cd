// Command meridiand is Meridian's control plane: one per cluster. It keeps
// the cluster's part of the service registry (from Kubernetes and from the
// Workload API), in etcd, and serves it. The assembly lives in package
// daemon; this is only the command line.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meridian-mesh/meridian/daemon"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := newCommand(args)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meridiand:", err)
		return 1
	}
	return 0
}

func newCommand(args []string) *cobra.Command {
	cfg := daemon.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "meridiand",
		Short: "Meridian control plane: one per cluster",
		Long: `meridiand keeps this cluster's services and endpoints (from Kubernetes and
from the Workload API) in the service registry, persists them in etcd (an
embedded etcd by default), and serves them.

Configuration comes from --config FILE (YAML), overridden by flags.`,
		Example: `  # A cluster of the lab, without Kubernetes, embedded etcd in ./onprem-dc1.meridian:
  meridiand --cluster onprem-dc1 --region onprem-east --labels provider=onprem

  # In a Kubernetes cluster, with an external etcd:
  meridiand --config /etc/meridian/meridiand.yaml --kube \
    --etcd-endpoints https://etcd-0:2379 --etcd-ca ca.pem --etcd-cert c.pem --etcd-key k.pem`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Flags were parsed onto the defaults for --help and errors;
			// parse again over the config file so that flags win.
			cfg, err := daemon.ConfigFromArgs(args)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			d, err := daemon.New(ctx, cfg)
			if err != nil {
				return err
			}
			// A second signal kills at once.
			go func() { <-ctx.Done(); stop() }()
			return d.Run(ctx)
		},
	}
	cmd.Flags().String("config", "", "YAML configuration file; flags override it")
	cfg.BindFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}
