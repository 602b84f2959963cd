package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/sched"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const long = `meridian-proxy runs the configuration meridiand sends it over xDS (the same
resources Envoy would get): listeners, routes, clusters, endpoints and
secrets. As a sidecar it terminates and originates mTLS for its workload;
as a gateway it takes traffic into the mesh (ingress), out of it (egress),
or between networks (east-west).`

const examples = `  # A sidecar in a pod (the injector sets this up; iptables capture traffic;
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
    --gateway-cert=tls.crt --gateway-key=tls.key`

// run parses the flags and runs the proxy until SIGTERM or SIGINT. It
// uses pflag alone rather than a command framework: the proxy has one
// command, and a framework that links text/template keeps every exported
// method of every linked type in the binary (the linker cannot prune what
// reflection might call), which the proxy pays for in resident memory.
func run(args []string, stdout, stderr io.Writer) int {
	var o sidecar.Options
	fs := pflag.NewFlagSet("meridian-proxy", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(stderr)
	o.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "%s\n\nUsage:\n  meridian-proxy [flags]\n\nExamples:\n%s\n\nFlags:\n%s", long, examples, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "meridian-proxy:", err)
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meridian-proxy: unexpected arguments %q (everything is a flag; see --help)\n", fs.Args())
		return 1
	}
	if err := serve(o, stderr); err != nil {
		fmt.Fprintln(stderr, "meridian-proxy:", err)
		return 1
	}
	return 0
}

func serve(o sidecar.Options, stderr io.Writer) error {
	cfg, closer, err := o.Config(stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	if o.SchedSlice > 0 {
		// The process's own setting, so here rather than in the proxy a
		// test may embed. A kernel or sandbox that refuses it costs only
		// latency under contention.
		if n, err := sched.SetSlice(o.SchedSlice); err != nil {
			cfg.Logger.Warn("meridian-proxy: scheduling slice not set", "slice", o.SchedSlice, "err", err)
		} else {
			cfg.Logger.Debug("meridian-proxy: scheduling slice set", "slice", o.SchedSlice, "threads", n)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p, err := sidecar.New(ctx, cfg)
	if err != nil {
		return err
	}
	// A second signal kills at once.
	go func() { <-ctx.Done(); stop() }()
	return p.Run(ctx)
}
