// Command meridian-demo is the lab's demo application and traffic
// generator (packages lab/demo and lab/traffic):
//
//	meridian-demo serve --service catalog --version v2 --cluster eks-use1 \
//	    --locality us-east-1/use1-az2 --listen 10.250.2.11:9090 \
//	    --upstream inventory=xds:///inventory.shop.svcluster.local:9090 \
//	    --register 10.250.2.1:15010 --service-account catalog
//
//	meridian-demo load --caller users@eks-use1 \
//	    --target frontend=xds:///frontend.shop.svcluster.local:9090 \
//	    --rate 20 --stats 10.250.2.2:15080
//
// Upstream and target addresses starting with xds:/// go through grpc-go's
// xDS resolver, which reads its bootstrap — the control plane's address
// and the node's cluster and locality — from GRPC_XDS_BOOTSTRAP_CONFIG or
// GRPC_XDS_BOOTSTRAP, as every grpc-go xDS client does (the lab writes it
// with lab/demo.Bootstrap); others are dialed as they are (a sidecar, a
// gateway).
// meridianctl lab starts these processes; they are not meant to be run by
// hand, but nothing stops you.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/lab/demo"
	"github.com/meridian-mesh/meridian/lab/demopb"
	"github.com/meridian-mesh/meridian/lab/traffic"
	"github.com/meridian-mesh/meridian/registry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meridian-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("want a command: serve or load (see meridian-demo serve --help)")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], log)
	case "load":
		return load(ctx, args[1:], log)
	}
	return fmt.Errorf("unknown command %q: want serve or load", args[0])
}

// dial connects to NAME=TARGET pairs.
func dial(pairs []string) (names []string, conns []*grpc.ClientConn, err error) {
	for _, p := range pairs {
		name, target, ok := strings.Cut(p, "=")
		if !ok || name == "" || target == "" {
			return nil, nil, fmt.Errorf("%q: want NAME=TARGET, such as catalog=xds:///catalog.shop.svcluster.local:9090", p)
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		names, conns = append(names, name), append(conns, conn)
	}
	return names, conns, nil
}

func serve(ctx context.Context, args []string, log *slog.Logger) error {
	var cluster, locality, namespace, service, version, listen, advertise, register, serviceAccount string
	var upstreams []string
	labels := map[string]string{}
	var ttl time.Duration
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.StringVar(&cluster, "cluster", "", "Meridian cluster this instance runs in (required)")
	fs.StringVar(&locality, "locality", "", "REGION/ZONE this instance runs in (required)")
	fs.StringVarP(&namespace, "namespace", "n", "shop", "namespace of the service")
	fs.StringVar(&service, "service", "", "service name (required)")
	fs.StringVar(&version, "version", "", "version label (v1, v2)")
	fs.StringVar(&listen, "listen", "127.0.0.1:9090", "IP:port to serve gRPC on")
	fs.StringArrayVar(&upstreams, "upstream", nil, "NAME=TARGET of a service to call on every request (repeat)")
	fs.StringVar(&register, "register", "", "meridiand's gRPC address: register this instance with its Workload API")
	fs.StringVar(&serviceAccount, "service-account", "", "service account to register this instance with: its sidecar's SVID is this account's, and clients verify it")
	fs.StringVar(&advertise, "advertise", "", "IP:port to register and report (a sidecar's inbound port); default --listen")
	fs.StringToStringVar(&labels, "label", labels, "extra workload labels KEY=VALUE")
	fs.DurationVar(&ttl, "ttl", 3*time.Second, "workload TTL when registering")
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := registry.ParseLocality(locality)
	if err != nil || loc.Zone == "" || cluster == "" || service == "" {
		return fmt.Errorf("--service, --cluster and --locality REGION/ZONE are required (got %q, %q, %q)", service, cluster, locality)
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	names, conns, err := dial(upstreams)
	if err != nil {
		lis.Close()
		return err
	}
	if advertise == "" {
		advertise = lis.Addr().String()
	}
	cfg := demo.Config{Self: &demopb.Hop{Service: service, Namespace: namespace, Version: version,
		Cluster: cluster, Region: loc.Region, Zone: loc.Zone, Address: advertise}}
	for i, conn := range conns {
		defer conn.Close()
		cfg.Upstreams = append(cfg.Upstreams, demo.Upstream{Name: names[i], Client: demopb.NewDemoClient(conn)})
	}
	var wl *grpc.ClientConn
	if register != "" {
		if wl, err = grpc.NewClient(register, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			lis.Close()
			return fmt.Errorf("--register: %w", err)
		}
		defer wl.Close()
	}
	log = log.With("service", service, "cluster", cluster, "address", advertise)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return demo.Serve(gctx, lis, cfg) })
	if wl != nil {
		if version != "" {
			labels["version"] = version
		}
		labels["app"] = service
		req := &workloadpb.RegisterRequest{Service: service, Namespace: namespace, Address: advertise,
			PortName: "grpc", Protocol: "grpc", Locality: loc.String(), Labels: labels, Ttl: durationpb.New(ttl), ServiceAccount: serviceAccount}
		g.Go(func() error { return demo.Keepalive(gctx, workloadpb.NewWorkloadServiceClient(wl), req, log) })
	}
	log.Info("serving", "upstreams", upstreams)
	return g.Wait()
}

func load(ctx context.Context, args []string, log *slog.Logger) error {
	var caller, stats string
	var targets []string
	var rate float64
	var timeout, every time.Duration
	fs := pflag.NewFlagSet("load", pflag.ContinueOnError)
	fs.StringVar(&caller, "caller", "load", "name sent with every call")
	fs.StringArrayVar(&targets, "target", nil, "NAME=TARGET to call (repeat; required)")
	fs.Float64Var(&rate, "rate", 20, "calls per second to each target")
	fs.DurationVar(&timeout, "timeout", time.Second, "deadline of each call")
	fs.StringVar(&stats, "stats", "", "IP:port to serve /stats on (JSON)")
	fs.DurationVar(&every, "print", 5*time.Second, "print a summary this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names, conns, err := dial(targets)
	if err != nil {
		return err
	}
	cfg := traffic.Config{Caller: caller, Rate: rate, Timeout: timeout}
	for i, conn := range conns {
		defer conn.Close()
		cfg.Targets = append(cfg.Targets, traffic.Target{Name: names[i], Client: demopb.NewDemoClient(conn)})
	}
	gen, err := traffic.New(cfg)
	if err != nil {
		return err
	}
	var lis net.Listener
	if stats != "" {
		if lis, err = net.Listen("tcp", stats); err != nil {
			return fmt.Errorf("--stats: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gen.Run(gctx) })
	if lis != nil {
		srv := &http.Server{Handler: gen.Handler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error { <-gctx.Done(); return srv.Close() })
	}
	if every > 0 {
		g.Go(func() error {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-t.C:
				}
				for _, tr := range gen.Window(every).Targets {
					fmt.Printf("%s %s → %s: %s\n", time.Now().Format(time.TimeOnly), caller, tr.Target, tr.Summary())
				}
			}
		})
	}
	log.Info("generating traffic", "caller", caller, "targets", targets, "rate", rate)
	return g.Wait()
}
