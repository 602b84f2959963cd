package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
)

func newWorkloadCommand(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "workload",
		Aliases: []string{"workloads", "wl"},
		Short:   "Register workloads that run outside Kubernetes (VMs, processes, the lab)",
		Long: `A workload registers one IP:PORT of one service with meridiand, then heartbeats
within its TTL (default 30s). Without heartbeats it turns unhealthy (no more
traffic), and after a grace period (default 1m) it is removed. Registering
the same service, namespace and address again is harmless: same ID.`,
	}
	cmd.AddCommand(newRegisterCommand(g), newDeregisterCommand(g), newListCommand(g), newHeartbeatCommand(g))
	return cmd
}

// withWorkloads runs fn with a Workload API client. Only the replica that
// leads a cluster serves the Workload API: calls a follower answers with
// the leader's address go to the leader, for the rest of the command.
func withWorkloads(g *Globals, fn func(workloadpb.WorkloadServiceClient) error) error {
	conn, err := g.dialLeader()
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(workloadpb.NewWorkloadServiceClient(conn))
}

func newRegisterCommand(g *Globals) *cobra.Command {
	req := &workloadpb.RegisterRequest{}
	var ttl time.Duration
	var keepalive bool
	cmd := &cobra.Command{
		Use:   "register --service NAME --namespace NS --address IP:PORT --locality REGION[/ZONE[/SUBZONE]]",
		Short: "Register a workload and print its ID",
		Example: `  meridianctl workload register --service web --namespace shop \
    --address 10.0.0.5:8080 --locality onprem-east/rack1/a \
    --port-name http --protocol http --label version=v2 --ttl 30s

  # In a script: register, and keep heartbeating until stopped (then deregister):
  meridianctl workload register --service web --namespace shop \
    --address [fd00::5]:8080 --locality eu-west-1/eu-west-1a --keepalive`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl != 0 {
				req.Ttl = durationpb.New(ttl)
			}
			return withWorkloads(g, func(c workloadpb.WorkloadServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				resp, err := c.Register(ctx, req)
				cancel()
				if err != nil {
					return err
				}
				w := resp.GetWorkload()
				if err := g.Print(w, func(t *tabwriter.Writer) { fmt.Fprintln(t, w.GetId()) }); err != nil {
					return err
				}
				if !keepalive {
					return nil
				}
				return keepAlive(cmd.Context(), g, c, w.GetId(), w.GetTtl().AsDuration(), req)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Service, "service", "", "service name")
	f.StringVarP(&req.Namespace, "namespace", "n", "", "namespace of the service")
	f.StringVar(&req.Address, "address", "", "the workload's IP:PORT ([IPv6]:PORT)")
	f.StringVar(&req.Locality, "locality", "", "where the workload runs: REGION[/ZONE[/SUBZONE]]")
	f.StringVar(&req.PortName, "port-name", "", "name of the port (needed when the service has several)")
	f.StringVar(&req.Protocol, "protocol", "", "protocol of the port: tcp (default), http, http2, grpc, tls or udp")
	f.StringToStringVar(&req.Labels, "label", nil, "a label KEY=VALUE (repeat, or separate with commas)")
	f.StringVar(&req.ServiceAccount, "service-account", "", "service account the workload runs as (its mesh identity)")
	f.DurationVar(&ttl, "ttl", 0, "how long the workload stays healthy without a heartbeat (default meridiand's, 30s)")
	f.BoolVar(&keepalive, "keepalive", false, "keep heartbeating until interrupted, registering again if meridiand forgot the workload; deregister on exit")
	for _, name := range []string{"service", "namespace", "address", "locality"} {
		_ = cmd.MarkFlagRequired(name)
	}
	_ = cmd.RegisterFlagCompletionFunc("protocol", cobra.FixedCompletions(
		[]string{"tcp", "http", "http2", "grpc", "tls", "udp"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newDeregisterCommand(g *Globals) *cobra.Command {
	var service, namespace, address string
	cmd := &cobra.Command{
		Use:   "deregister {ID... | --service NAME --namespace NS --address IP:PORT}",
		Short: "Remove workloads at once",
		Example: `  meridianctl workload deregister web-3f2a9c1b7d4e
  meridianctl workload deregister --service web --namespace shop --address 10.0.0.5:8080`,
		ValidArgsFunction: completeIDs(g),
		RunE: func(cmd *cobra.Command, ids []string) error {
			if (len(ids) > 0) == (address != "") {
				return errors.New("give workload IDs, or --service, --namespace and --address, not both")
			}
			return withWorkloads(g, func(c workloadpb.WorkloadServiceClient) error {
				if address != "" {
					id, err := findID(cmd.Context(), g, c, service, namespace, address)
					if err != nil {
						return err
					}
					ids = []string{id}
				}
				for _, id := range ids {
					ctx, cancel := g.Request(cmd.Context())
					_, err := c.Deregister(ctx, &workloadpb.DeregisterRequest{Id: id})
					cancel()
					if err != nil {
						return err
					}
					fmt.Fprintf(g.Out, "workload %s deregistered\n", id)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "service of the workload to remove")
	f.StringVarP(&namespace, "namespace", "n", "", "namespace of the workload to remove")
	f.StringVar(&address, "address", "", "IP:PORT of the workload to remove")
	cmd.MarkFlagsRequiredTogether("service", "namespace", "address")
	return cmd
}

// findID looks a workload up by what identifies it.
func findID(ctx context.Context, g *Globals, c workloadpb.WorkloadServiceClient, service, namespace, address string) (string, error) {
	want, err := netip.ParseAddrPort(address)
	if err != nil {
		return "", Hint(fmt.Errorf("--address %q: %w", address, err), "give IP:PORT, IPv6 in brackets: [fd00::5]:8080")
	}
	rctx, cancel := g.Request(ctx)
	defer cancel()
	resp, err := c.List(rctx, &workloadpb.ListRequest{Namespace: namespace, Service: service})
	if err != nil {
		return "", err
	}
	for _, w := range resp.GetWorkloads() {
		if got, err := netip.ParseAddrPort(w.GetAddress()); err == nil && sameAddrPort(got, want) {
			return w.GetId(), nil
		}
	}
	return "", Hint(fmt.Errorf("no workload of %s.%s at %s", service, namespace, address),
		"see 'meridianctl workload list --namespace "+namespace+"'")
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Addr().Unmap() == b.Addr().Unmap() && a.Port() == b.Port()
}

func newListCommand(g *Globals) *cobra.Command {
	req := &workloadpb.ListRequest{}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "get"},
		Short:   "List registered workloads and their health",
		Example: `  meridianctl workload list
  meridianctl workload list --namespace shop --service web -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withWorkloads(g, func(c workloadpb.WorkloadServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				resp, err := c.List(ctx, req)
				if err != nil {
					return err
				}
				if len(resp.GetWorkloads()) == 0 && g.Output == "table" {
					fmt.Fprintln(g.Err, "No workloads found.")
					return nil
				}
				return g.Print(resp, func(t *tabwriter.Writer) { workloadTable(t, resp.GetWorkloads()) })
			})
		},
	}
	cmd.Flags().StringVarP(&req.Namespace, "namespace", "n", "", "only workloads of this namespace (default all)")
	cmd.Flags().StringVar(&req.Service, "service", "", "only workloads of this service")
	return cmd
}

func workloadTable(t *tabwriter.Writer, ws []*workloadpb.Workload) {
	fmt.Fprintln(t, "ID\tSERVICE\tADDRESS\tPORT\tLOCALITY\tHEALTH\tLAST HEARTBEAT\tLABELS")
	now := time.Now()
	for _, w := range ws {
		port := strings.ToLower(w.GetProtocol())
		if w.GetPortName() != "" {
			port = w.GetPortName() + "/" + port
		}
		labels := make([]string, 0, len(w.GetLabels()))
		for k, v := range w.GetLabels() {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		ago := now.Sub(w.GetLastHeartbeat().AsTime()).Round(time.Second)
		fmt.Fprintf(t, "%s\t%s.%s\t%s\t%s\t%s\t%s\t%v ago\t%s\n", w.GetId(), w.GetService(), w.GetNamespace(), w.GetAddress(),
			port, w.GetLocality(), strings.ToLower(w.GetHealth().String()), max(ago, 0), strings.Join(labels, ","))
	}
}

func newHeartbeatCommand(g *Globals) *cobra.Command {
	var keepalive bool
	cmd := &cobra.Command{
		Use:   "heartbeat ID",
		Short: "Keep a workload healthy for another TTL",
		Example: `  meridianctl workload heartbeat web-3f2a9c1b7d4e
  # Heartbeat until Ctrl-C, every third of the TTL:
  meridianctl workload heartbeat web-3f2a9c1b7d4e --keepalive`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeIDs(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWorkloads(g, func(c workloadpb.WorkloadServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				resp, err := c.Heartbeat(ctx, &workloadpb.HeartbeatRequest{Id: args[0]})
				cancel()
				if err != nil {
					return err
				}
				if err := g.Print(resp, func(t *tabwriter.Writer) {
					fmt.Fprintf(t, "%s healthy until %s\n", args[0], resp.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
				}); err != nil {
					return err
				}
				if !keepalive {
					return nil
				}
				return keepAlive(cmd.Context(), g, c, args[0], resp.GetTtl().AsDuration(), nil)
			})
		},
	}
	cmd.Flags().BoolVar(&keepalive, "keepalive", false, "keep heartbeating, every third of the TTL, until interrupted")
	return cmd
}

// keepAlive heartbeats every third of the TTL until ctx ends. Transient
// failures (meridiand restarting) are reported and retried. With reg set
// (register --keepalive), a workload meridiand no longer knows is
// registered again, and it is deregistered when ctx ends; without, that is
// an error.
func keepAlive(ctx context.Context, g *Globals, c workloadpb.WorkloadServiceClient, id string, ttl time.Duration, reg *workloadpb.RegisterRequest) error {
	interval := max(ttl/3, 100*time.Millisecond)
	fmt.Fprintf(g.Err, "keeping %s alive: a heartbeat every %v; Ctrl-C to stop\n", id, interval)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if reg == nil {
				return nil
			}
			// ctx is over: the last request gets a context of its own.
			dctx, cancel := g.Request(context.WithoutCancel(ctx))
			defer cancel()
			if _, err := c.Deregister(dctx, &workloadpb.DeregisterRequest{Id: id}); err != nil {
				return err
			}
			fmt.Fprintf(g.Err, "workload %s deregistered\n", id)
			return nil
		case <-t.C:
		}
		rctx, cancel := g.Request(ctx)
		_, err := c.Heartbeat(rctx, &workloadpb.HeartbeatRequest{Id: id})
		cancel()
		switch code := status.Code(err); {
		case err == nil, ctx.Err() != nil:
		case code == codes.NotFound && reg != nil:
			rctx, cancel := g.Request(ctx)
			_, err := c.Register(rctx, reg)
			cancel()
			if err != nil {
				msg, _ := explain(err, g, nil)
				fmt.Fprintf(g.Err, "registering %s again failed, retrying: %s\n", id, msg)
			} else {
				fmt.Fprintf(g.Err, "meridiand had forgotten %s: registered again\n", id)
			}
		case code == codes.Unavailable || code == codes.DeadlineExceeded:
			msg, _ := explain(err, g, nil)
			fmt.Fprintf(g.Err, "heartbeat failed, retrying: %s\n", msg)
		default:
			return err
		}
	}
}

// completeIDs completes workload IDs from meridiand's list, for shells.
func completeIDs(g *Globals) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		_ = withWorkloads(g, func(c workloadpb.WorkloadServiceClient) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
			defer cancel()
			resp, err := c.List(ctx, &workloadpb.ListRequest{})
			for _, w := range resp.GetWorkloads() {
				out = append(out, cobra.CompletionWithDesc(w.GetId(), w.GetService()+"."+w.GetNamespace()+" "+w.GetAddress()))
			}
			return err
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
