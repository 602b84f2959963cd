package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/lab"
)

// labDirEnv overrides the lab's default state directory.
const labDirEnv = "MERIDIAN_LAB_DIR"

func newLabCommand(g *Globals) *cobra.Command {
	dir := os.Getenv(labDirEnv)
	if dir == "" {
		dir = ".lab"
	}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a multi-cluster Meridian lab on this machine: three control planes, a demo app, traffic",
		Long: `The lab runs a mesh on one machine, without Kubernetes or Docker: one
meridiand (with embedded etcd) per cluster, gossiping under one key; a demo
application (frontend → catalog v1/v2 → inventory, and an EU-resident
customer-records service) registered through the Workload API; its
failover and residency policies; and users in every cluster calling it.

As root where 'ip netns' works, every cluster lives in its own network
namespace behind a router namespace, and 'lab cut' cuts its link; elsewhere
the clusters share loopback and 'lab cut' stops their processes.

'lab up' stays in the foreground, printing where traffic goes whenever that
changes, until Ctrl-C or 'lab down'. Everything it starts and writes is in
--state-dir (default .lab, or $` + labDirEnv + `); lab.json there describes every
address for scripts.`,
		Example: `  meridianctl lab up
  meridianctl lab status
  eval "$(meridianctl lab env eks-use1)"; meridianctl drill region us-east-1 --live --duration 30s
  meridianctl lab cut eks-euw1 && meridianctl lab status && meridianctl lab heal eks-euw1
  meridianctl lab down`,
	}
	cmd.PersistentFlags().StringVar(&dir, "state-dir", dir, "the lab's directory ($"+labDirEnv+")")
	cmd.AddCommand(newLabUpCommand(g, &dir), newLabStatusCommand(g, &dir), newLabDownCommand(g, &dir),
		newLabCutCommand(g, &dir, true), newLabCutCommand(g, &dir, false), newLabEnvCommand(g, &dir), newLabCallCommand(g, &dir))
	return cmd
}

// labError adds the hint that fits a lab error.
func labError(err error) error {
	switch {
	case errors.Is(err, lab.ErrDied):
		return Hint(err, "'meridianctl lab down' cleans up what it left ('lab up' does too, before starting)")
	case errors.Is(err, lab.ErrRunning):
		return Hint(err, "see it with 'meridianctl lab status', stop it with 'meridianctl lab down', or use another --state-dir")
	case errors.Is(err, lab.ErrNotRunning):
		return Hint(err, "start one with 'meridianctl lab up' (or point --state-dir at the lab's directory)")
	case err != nil:
		return Hint(err, "the processes' logs are in the lab's directory, under logs/")
	}
	return nil
}

func newLabUpCommand(g *Globals, dir *string) *cobra.Command {
	var clusters []string
	var netns, binDir string
	var sidecars bool
	var rate float64
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Bring the lab up, print where traffic goes, and stop it all on Ctrl-C",
		Example: `  meridianctl lab up
  meridianctl lab up --clusters onprem-dc1,eks-euw1 --netns=false
  meridianctl lab up --clusters eks-use1,edge=ap-south-1 --rate 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := lab.ParseClusters(clusters)
			if err != nil {
				return Hint(err, "known clusters: onprem-dc1, eks-use1, eks-euw1")
			}
			if rate <= 0 || rate > 1000 {
				return Hint(fmt.Errorf("--rate %g: want calls per second between 0 and 1000", rate), "the default, 20, is plenty to see traffic move")
			}
			if netns != "auto" && netns != "true" && netns != "false" {
				return Hint(fmt.Errorf("--netns %q: want auto, true or false", netns), "auto uses namespaces when running as root")
			}
			ctx := cmd.Context()
			l, err := lab.Start(ctx, lab.Options{StateDir: *dir, Clusters: cs, Netns: netns, BinDir: binDir, Rate: rate, Sidecars: sidecars, Progress: g.Out})
			if err != nil {
				if ctx.Err() != nil {
					return Hint(errors.New("interrupted while starting; everything started was stopped"), "run 'meridianctl lab up' again when ready")
				}
				return labError(err)
			}
			printNextSteps(g.Out, l.State)
			l.Watch(ctx, g.Out, interval, 2*time.Second)
			fmt.Fprintln(g.Out, "\nStopping the lab ...")
			if err := l.Close(); err != nil {
				return labError(err)
			}
			fmt.Fprintln(g.Out, "Lab stopped: every process, namespace and file it made is gone.")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&clusters, "clusters", []string{"onprem-dc1", "eks-use1", "eks-euw1"}, "clusters: known names, or NAME=REGION for new ones")
	f.StringVar(&netns, "netns", "auto", "a network namespace per cluster: auto (when root), true, or false (loopback)")
	f.Float64Var(&rate, "rate", 20, "calls per second from each cluster's users to each entry service")
	f.BoolVar(&sidecars, "sidecars", true, "run every demo instance and the users behind a meridian-proxy sidecar; false: proxyless gRPC (xds:///)")
	f.StringVar(&binDir, "bin-dir", "", "directory of meridiand, meridian-demo, meridian-proxy and meridianctl (default: next to this meridianctl, else built from source)")
	f.DurationVar(&interval, "print-every", time.Second, "how often to look at the last 2s of traffic (printed only when it moved, or every 30s)")
	return cmd
}

// printNextSteps prints the lab's addresses and what to try.
func printNextSteps(w io.Writer, s *lab.State) {
	fmt.Fprintln(w, "\nClusters:")
	for _, c := range s.Clusters {
		labels := make([]string, 0, len(c.Labels))
		for k, v := range c.Labels {
			labels = append(labels, k+"="+v)
		}
		fmt.Fprintf(w, "  %-11s %-12s meridiand %s  admin %s/  (%s)\n", c.Name, c.Region, c.GRPC, c.Admin, strings.Join(slices.Sorted(slices.Values(labels)), ","))
		if c.Ingress != "" {
			fmt.Fprintf(w, "  %-11s %-12s ingress gateway %s (gRPC and HTTP, by authority)  east-west gateway %s\n", "", "", c.Ingress, c.EastWest)
		}
	}
	first := s.Clusters[0]
	drill := first
	for _, c := range s.Clusters {
		if c.Region == "us-east-1" {
			drill = c
		}
	}
	if drill.Dashboard != "" {
		fmt.Fprintf(w, "\nDashboard: %s (every meridiand serves it; this is %s's)\n", drill.Dashboard, drill.Name)
	}
	fmt.Fprintf(w, "\nScripts: %s/lab.json has every address.\n", s.StateDir)
	fmt.Fprintf(w, "\nTry, in another terminal:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  eval \"$(meridianctl lab env %s)\"\t# MERIDIAN_SERVER=%s: meridianctl talks to %s\n", drill.Name, drill.GRPC, drill.Name)
	fmt.Fprintf(tw, "  meridianctl status\t# the mesh as %s sees it\n", drill.Name)
	fmt.Fprintf(tw, "  meridianctl drill region %s\t# what would fail over where (dry run)\n", drill.Region)
	fmt.Fprintf(tw, "  meridianctl drill region %s --live --duration 30s\t# watch the traffic below leave and come back\n", drill.Region)
	for _, c := range s.Clusters {
		if c.Labels["jurisdiction"] == "eu" {
			fmt.Fprintf(tw, "  meridianctl lab cut %s; sleep 10; meridianctl lab heal %s\t# an EU outage: customer-records fails rather than leave the EU\n", c.Name, c.Name)
		}
	}
	if first.Ingress != "" {
		fmt.Fprintf(tw, "  meridianctl lab call %s %s\t# one call through %s's ingress gateway, and the path it took\n", first.Name, lab.Frontend, first.Name)
	}
	fmt.Fprintf(tw, "  meridianctl lab status\t# clusters, control planes, traffic\n")
	tw.Flush()
	fmt.Fprintf(w, "\nCtrl-C here (or meridianctl lab down) stops the lab and removes everything it started.\n")
}

func newLabStatusCommand(g *Globals, dir *string) *cobra.Command {
	var window time.Duration
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show the lab's clusters, their control planes and the traffic of the last seconds",
		Example: "  meridianctl lab status\n  meridianctl lab status -o json --window 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window < time.Second || window > 10*time.Minute {
				return Hint(fmt.Errorf("--window %v: want between 1s and 10m", window), "the default, 10s, sums up the last seconds")
			}
			st, err := lab.GetStatus(cmd.Context(), *dir, window)
			if err != nil {
				return labError(err)
			}
			if g.Output == "table" {
				st.Write(g.Out)
				return nil
			}
			return printValue(g, st)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 10*time.Second, "how much recent traffic to sum up")
	return cmd
}

// printValue prints a Go value as JSON or YAML, for --output.
func printValue(g *Globals, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if g.Output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = g.Out.Write(b)
		return err
	}
	_, err = fmt.Fprintln(g.Out, string(b))
	return err
}

func newLabDownCommand(g *Globals, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:     "down",
		Short:   "Stop the lab (or clean up after one that crashed): processes, namespaces, files",
		Example: "  meridianctl lab down\n  meridianctl lab down --state-dir /tmp/lab2",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			what, err := lab.Down(cmd.Context(), *dir)
			if err != nil {
				return labError(err)
			}
			fmt.Fprintln(g.Out, strings.ToUpper(what[:1])+what[1:]+".")
			return nil
		},
	}
}

func newLabCutCommand(g *Globals, dir *string, cut bool) *cobra.Command {
	use, short, example := "cut CLUSTER", "Cut a cluster off: its link goes down (netns), or its processes stop (loopback)", "  meridianctl lab cut eks-euw1"
	if !cut {
		use, short, example = "heal CLUSTER", "Restore a cluster 'lab cut' took off", "  meridianctl lab heal eks-euw1"
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			s, err := lab.Load(*dir)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, c := range s.Clusters {
				out = append(out, c.Name)
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.LoadRunning(*dir)
			if err != nil {
				return labError(err)
			}
			f := s.Cut
			if !cut {
				f = s.Heal
			}
			if err := f(cmd.Context(), args[0]); err != nil {
				return Hint(err, "see 'meridianctl lab status'")
			}
			if cut {
				fmt.Fprintf(g.Out, "%s is cut off (at %s). 'meridianctl lab heal %s' restores it.\n", args[0], time.Now().Format(time.TimeOnly), args[0])
			} else {
				fmt.Fprintf(g.Out, "%s is back (at %s).\n", args[0], time.Now().Format(time.TimeOnly))
			}
			return nil
		},
	}
}

func newLabEnvCommand(g *Globals, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:     "env [CLUSTER]",
		Short:   "Print the shell line pointing meridianctl at a lab cluster's meridiand",
		Example: "  eval \"$(meridianctl lab env eks-use1)\"",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := lab.Load(*dir)
			if err != nil {
				return labError(err)
			}
			c := &s.Clusters[0]
			if len(args) == 1 {
				if c, err = s.Cluster(args[0]); err != nil {
					return Hint(err, "see 'meridianctl lab status'")
				}
			}
			fmt.Fprintf(g.Out, "export MERIDIAN_SERVER=%s\n", c.GRPC)
			return nil
		},
	}
}

func newLabCallCommand(g *Globals, dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "call CLUSTER [SERVICE]",
		Short: "Call a demo service once through a cluster's ingress gateway and show the path it took",
		Long: `Call a demo service (default frontend) once, as a user outside the mesh
would: through the cluster's ingress gateway, naming the service by its mesh
host (SERVICE.shop.svc.cluster.local:9090) as the gRPC authority. Prints
every hop: service, version, cluster, zone and address.`,
		Example: "  meridianctl lab call eks-use1\n  meridianctl lab call eks-use1 customer-records -o json",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.LoadRunning(*dir)
			if err != nil {
				return labError(err)
			}
			c, err := s.Cluster(args[0])
			if err != nil {
				return Hint(err, "see 'meridianctl lab status'")
			}
			service := lab.Frontend
			if len(args) == 2 {
				service = args[1]
			}
			if c.Ingress == "" {
				return Hint(fmt.Errorf("cluster %s of this lab has no ingress gateway", c.Name), "restart the lab with this meridianctl: 'meridianctl lab down; meridianctl lab up'")
			}
			reply, err := lab.CallThrough(cmd.Context(), c.Ingress, service)
			if err != nil {
				msg := oneLine(status.Convert(err).Message())
				hint := "see 'meridianctl lab status': a cut cluster's endpoints are down, and residency keeps a service from failing over out of its jurisdiction"
				if strings.Contains(msg, "no route for") {
					hint = "the demo's services are frontend, catalog, inventory and customer-records"
				}
				return Hint(fmt.Errorf("%s through the ingress gateway of %s (%s): %s", service, c.Name, c.Ingress, msg), hint)
			}
			return g.Print(reply, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "through %s's ingress gateway %s:\n", c.Name, c.Ingress)
				fmt.Fprintln(w, "HOP\tSERVICE\tVERSION\tCLUSTER\tZONE\tADDRESS")
				for i, h := range reply.GetHops() {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, h.GetService(), h.GetVersion(), h.GetCluster(), h.GetZone(), h.GetAddress())
				}
			})
		},
	}
}
