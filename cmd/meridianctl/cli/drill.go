package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
)

type drillOptions struct {
	dryRun, live bool
	duration     time.Duration
}

func newDrillCommand(g *Globals) *cobra.Command {
	o := &drillOptions{}
	cmd := &cobra.Command{
		Use:   "drill {region|zone|cluster} NAME [--dry-run | --live --duration 60s]",
		Short: "Rehearse an outage: what fails over where, and which services lose every allowed endpoint",
		Long: `Answer "what happens if this region, zone or cluster goes down?".

--dry-run (the default) changes nothing: for every service the outage
touches and every client locality, it prints where traffic goes before and
after, the capacity left, and the services left with no allowed endpoint
(a residency outage: their requests fail rather than leave).

--live drains the target through the control plane, in every cluster of
the mesh, for --duration, and prints where traffic goes as it shifts. The
drain is bound to a lease this command keeps alive: Ctrl-C, the end of the
duration, or this process dying (the lease runs out) restores the target.`,
		Example: `  meridianctl drill region us-east-1
  meridianctl drill zone us-east-1/use1-az1 --dry-run -o json
  meridianctl drill region us-east-1 --live --duration 30s
  meridianctl drill list`,
	}
	f := cmd.PersistentFlags()
	f.BoolVar(&o.dryRun, "dry-run", false, "compute the outage's effect without touching traffic (the default)")
	f.BoolVar(&o.live, "live", false, "drain the target for --duration, then restore it")
	f.DurationVar(&o.duration, "duration", time.Minute, "how long a live drill lasts")
	cmd.MarkFlagsMutuallyExclusive("dry-run", "live")
	for _, k := range []struct{ kind, arg, example string }{
		{"region", "REGION", "us-east-1"},
		{"zone", "REGION/ZONE", "us-east-1/use1-az1"},
		{"cluster", "CLUSTER", "eks-use1"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:     k.kind + " " + k.arg,
			Short:   "Rehearse the outage of a " + k.kind,
			Example: "  meridianctl drill " + k.kind + " " + k.example,
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				t := &policyapipb.Target{Kind: k.kind, Name: args[0]}
				if !o.live && cmd.Flags().Changed("duration") {
					return errors.New("--duration applies to --live drills")
				}
				return withPolicyAPI(g, func(_ policyapipb.PolicyServiceClient, lc policyapipb.LocalityServiceClient) error {
					if o.live {
						return runLiveDrill(cmd.Context(), g, lc, t, o.duration)
					}
					return planDrill(cmd.Context(), g, lc, t)
				})
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the live drills in force anywhere in the mesh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withPolicyAPI(g, func(_ policyapipb.PolicyServiceClient, lc policyapipb.LocalityServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				resp, err := lc.ListDrills(ctx, &policyapipb.ListDrillsRequest{})
				if err != nil {
					return err
				}
				if len(resp.GetDrills()) == 0 && g.Output == "table" {
					fmt.Fprintln(g.Err, "No live drills.")
					return nil
				}
				return g.Print(resp, func(t *tabwriter.Writer) {
					fmt.Fprintln(t, "ID\tTARGET\tHELD BY\tSTARTED\tENDS")
					for _, d := range resp.GetDrills() {
						fmt.Fprintf(t, "%s\t%s %s\t%s\t%s\t%s\n", d.GetId(), d.GetTarget().GetKind(), d.GetTarget().GetName(), d.GetCluster(),
							d.GetStarted().AsTime().Local().Format(time.TimeOnly), d.GetEnds().AsTime().Local().Format(time.TimeOnly))
					}
				})
			})
		},
	})
	return cmd
}

const drillNotFoundHint = "drill a region, zone or cluster the mesh has: the known ones are listed above"

func planDrill(ctx context.Context, g *Globals, lc policyapipb.LocalityServiceClient, t *policyapipb.Target) error {
	ctx, cancel := g.Request(ctx)
	defer cancel()
	resp, err := lc.PlanDrill(ctx, &policyapipb.PlanDrillRequest{Target: t})
	if err != nil {
		return refusal(err, drillNotFoundHint)
	}
	if g.Output != "table" {
		return g.Print(resp.GetReport(), nil)
	}
	var rep locality.DrillReport
	if err := decodeStruct(resp.GetReport(), &rep); err != nil {
		return err
	}
	fmt.Fprintf(g.Out, "Drill: %s — dry run, nothing changes.\n\n", rep.Target)
	return printPlan(g.Out, rep)
}

func decodeStruct(m interface{ MarshalJSON() ([]byte, error) }, v any) error {
	b, err := m.MarshalJSON()
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return fmt.Errorf("decode the answer: %w", err)
	}
	return nil
}

func printPlan(w io.Writer, rep locality.DrillReport) error {
	if len(rep.Services) == 0 {
		fmt.Fprintln(w, "No service has endpoints there: nothing moves.")
		return nil
	}
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "SERVICE\tCLIENT\tBEFORE\tAFTER\tMOVED\tCAPACITY LEFT")
	for _, si := range rep.Services {
		for i, c := range si.Clients {
			svc, capacity := "", ""
			if i == 0 {
				svc = si.Service.String()
				capacity = fmt.Sprintf("%.0f%% (%d of %d endpoints)", si.CapacityLeft, si.ServingAfter, si.ServingBefore)
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%.0f%%\t%s\n", svc, c.Client.Locality, shares(c.Before), shares(c.After), c.Moved, capacity)
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	var outages, stranded []string
	for _, si := range rep.Services {
		switch {
		case si.ResidencyOutage:
			outages = append(outages, si.Service.String())
		case si.Stranded:
			stranded = append(stranded, si.Service.String())
		}
	}
	if len(outages) > 0 {
		fmt.Fprintf(w, "\nResidency outage — every allowed endpoint is down and requests fail rather than leave their jurisdiction: %s\n", strings.Join(outages, ", "))
	}
	if len(stranded) > 0 {
		fmt.Fprintf(w, "\nLeft with no endpoint anywhere — every request fails: %s\n", strings.Join(stranded, ", "))
	}
	return nil
}

// shares renders where a client's requests go: "eu-west-1/euw1-az1 50%, ...".
func shares(ss []locality.Share) string {
	failing := 0
	for _, s := range ss {
		if s.Failing {
			failing++
		}
	}
	if len(ss) == failing {
		return "no serving endpoint: requests fail"
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%s %.0f%%", s.Locality, s.Percent)
		if s.Failing {
			out[i] += " (failing)"
		}
	}
	return strings.Join(out, ", ")
}

// runLiveDrill starts a drill and keeps its lease alive with heartbeats
// until it ends, printing where traffic goes whenever it changes. Ctrl-C
// (ctx) stops the drill and waits for the target to be restored.
func runLiveDrill(ctx context.Context, g *Globals, lc policyapipb.LocalityServiceClient, t *policyapipb.Target, d time.Duration) error {
	// The stream outlives ctx so that an interrupted drill can still be
	// stopped cleanly; it ends with this function.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	st, err := lc.RunDrill(sctx)
	if err != nil {
		return err
	}
	// send takes io.EOF for what gRPC means by it: meridiand has ended the
	// stream, and its last events and its status are still to come through
	// Recv: a refusal of the start, or the end of the drill that a heartbeat
	// due at that moment meets.
	send := func(req *policyapipb.RunDrillRequest) error {
		if err := st.Send(req); err != nil && err != io.EOF {
			return fmt.Errorf("drill stream: %w", err)
		}
		return nil
	}
	if err := send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Start{Start: &policyapipb.StartDrill{Target: t, Duration: durationpb.New(d)}}}); err != nil {
		return err
	}
	events := make(chan *policyapipb.RunDrillEvent)
	recvErr := make(chan error, 1)
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case events <- ev:
			case <-sctx.Done():
				return
			}
		}
	}()
	p := &drillPrinter{g: g, last: map[string]string{}}
	var heartbeat <-chan time.Time
	var stopDeadline <-chan time.Time
	interrupted := ctx.Done()
	for {
		select {
		case err := <-recvErr:
			if err == io.EOF {
				err = errors.New("meridiand ended the drill stream without a reason")
			}
			return refusal(err, drillNotFoundHint)
		case ev := <-events:
			if err := p.event(ev); err != nil {
				return err
			}
			if s := ev.GetStarted(); s != nil {
				tk := time.NewTicker(max(s.GetLeaseTtl().AsDuration()/3, 100*time.Millisecond))
				defer tk.Stop()
				heartbeat = tk.C
			}
			if e := ev.GetEnded(); e != nil {
				if e.GetReason() == "lease lost" {
					return Hint(errors.New("the drill ended early: its lease was lost"), "meridiand could not renew the lease in etcd; check its logs")
				}
				return nil
			}
		case <-heartbeat:
			if err := send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Heartbeat{Heartbeat: &policyapipb.Heartbeat{}}}); err != nil {
				return err
			}
		case <-interrupted:
			interrupted = nil
			p.note("interrupted: stopping the drill")
			if err := send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Stop{Stop: &policyapipb.Stop{}}}); err != nil {
				return err
			}
			stopDeadline = time.After(g.Timeout)
		case <-stopDeadline:
			return Hint(fmt.Errorf("meridiand did not confirm the end of the drill within %v", g.Timeout),
				"the drill's lease runs out on its own; check with 'meridianctl drill list'")
		}
	}
}

// drillPrinter prints a live drill's events: each client's shares when
// they change.
type drillPrinter struct {
	g       *Globals
	start   time.Time
	applied bool
	last    map[string]string
}

func (p *drillPrinter) note(format string, args ...any) {
	fmt.Fprintf(p.g.Out, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

func (p *drillPrinter) event(ev *policyapipb.RunDrillEvent) error {
	if p.g.Output != "table" {
		b, err := protojson.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode the event: %w", err)
		}
		_, err = fmt.Fprintln(p.g.Out, string(b))
		return err
	}
	switch {
	case ev.GetStarted() != nil:
		s := ev.GetStarted()
		p.start = time.Now()
		d := s.GetDrill()
		fmt.Fprintf(p.g.Out, "Live drill %s: %s %s drained in every cluster until %s (lease %v held by %s).\n",
			d.GetId(), d.GetTarget().GetKind(), d.GetTarget().GetName(), d.GetEnds().AsTime().Local().Format(time.TimeOnly),
			s.GetLeaseTtl().AsDuration(), d.GetCluster())
		fmt.Fprintf(p.g.Out, "Ctrl-C ends it early; if this process dies, the lease runs out within %v and the target is restored.\n",
			s.GetLeaseTtl().AsDuration())
		var rep locality.DrillReport
		if err := decodeStruct(s.GetPlan(), &rep); err == nil {
			for _, si := range rep.Services {
				if si.ResidencyOutage {
					fmt.Fprintf(p.g.Out, "Expect a residency outage of %s: its requests fail rather than leave.\n", si.Service)
				}
				for _, c := range si.Clients {
					key := si.Service.String() + " from " + c.Client.Locality.String()
					p.last[key] = shares(c.Before)
					p.note("%s: %s (before)", key, p.last[key])
				}
			}
		}
	case ev.GetProgress() != nil:
		pr := ev.GetProgress()
		if pr.GetApplied() != p.applied {
			p.applied = pr.GetApplied()
			if p.applied {
				p.note("drain in force")
			} else {
				p.note("drain lifted: target restored")
			}
		}
		for _, cs := range pr.GetShares() {
			key := cs.GetService() + " from " + cs.GetClient()
			now := liveShares(cs)
			if p.last[key] != now {
				p.last[key] = now
				p.note("%s: %s", key, now)
			}
		}
	case ev.GetEnded() != nil:
		p.note("drill ended: %s", ev.GetEnded().GetReason())
	}
	return nil
}

func liveShares(cs *policyapipb.ClientShares) string {
	ss := make([]locality.Share, len(cs.GetShares()))
	for i, s := range cs.GetShares() {
		l, _ := registry.ParseLocality(s.GetLocality())
		ss[i] = locality.Share{Locality: l, Percent: s.GetPercent(), Failing: s.GetFailing()}
	}
	return shares(ss)
}
