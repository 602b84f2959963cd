package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridian-mesh/meridian/trust/exchange"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

// rotationSteps are the steps of a root rotation, in order.
var rotationSteps = []trustpb.RotationStep{
	trustpb.RotationStep_ROTATION_STEP_PREPARE,
	trustpb.RotationStep_ROTATION_STEP_ACTIVATE,
	trustpb.RotationStep_ROTATION_STEP_RETIRE,
}

func newTrustRotate(g *Globals) *cobra.Command {
	var overlap time.Duration
	var force, noWait bool
	var waitTimeout, poll time.Duration
	cmd := &cobra.Command{
		Use:   "rotate [prepare|activate|retire|status]",
		Short: "Rotate the mesh's root CA across every cluster, without a failed handshake",
		Long: `Rotate the mesh's root: a new root is added to every cluster's bundle
(prepare), then signs every cluster's intermediate and SVIDs (activate), then
the old root leaves every bundle (retire). Every cluster follows through the
federation; nothing is copied by hand. Point --server at the root holder's
meridiand (one that does not hold the root, or does not lead, sends the
command on).

Without a step, walks all three, waiting after each until every cluster that
is not dead has caught up, then for the overlap: half the SVID TTL after
prepare (workloads renewing by CSR fetch the new bundle), one TTL after
activate (no SVID under the old root is left). A step refuses to run ahead of
a cluster that has not caught up with the one before, unless --force.

With one step, takes it and waits until every cluster has caught up (unless
--no-wait); the overlap between steps is then yours to keep. status shows
where each cluster stands.`,
		Example: `  meridianctl trust rotate --server ROOT-HOLDER:15010
  meridianctl trust rotate prepare
  meridianctl trust rotate status -o json`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"prepare", "activate", "retire", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := g.dialLeader()
			if err != nil {
				return err
			}
			defer conn.Close()
			r := &rotator{g: g, c: trustpb.NewRootRotationClient(conn), force: force, waitTimeout: waitTimeout, poll: poll}
			ctx := cmd.Context()
			switch {
			case len(args) == 0:
				return trustHint(r.walk(ctx, overlap, cmd.Flags().Changed("overlap")))
			case args[0] == "status":
				st, err := r.status(ctx)
				if err != nil {
					return trustHint(err)
				}
				return g.Print(st, func(w *tabwriter.Writer) { printRotation(w, st) })
			}
			i := slices.IndexFunc(rotationSteps, func(s trustpb.RotationStep) bool { return exchange.StepName(s) == args[0] })
			if i < 0 {
				return fmt.Errorf("step %q: want prepare, activate, retire or status", args[0])
			}
			return trustHint(r.step(ctx, rotationSteps[i], !noWait))
		},
	}
	f := cmd.Flags()
	f.DurationVar(&overlap, "overlap", 0, "wait this long after prepare and after activate, instead of half the SVID TTL and one TTL")
	f.BoolVar(&force, "force", false, "take a step although some cluster has not caught up (its handshakes may fail)")
	f.BoolVar(&noWait, "no-wait", false, "take the step and return, without waiting for every cluster")
	f.DurationVar(&waitTimeout, "wait-timeout", 10*time.Minute, "give up waiting for the clusters to catch up with a step after this long, naming the ones that lag")
	f.DurationVar(&poll, "poll", time.Second, "how often to ask how far the clusters are")
	return cmd
}

type rotator struct {
	g           *Globals
	c           trustpb.RootRotationClient
	force       bool
	waitTimeout time.Duration
	poll        time.Duration
}

func (r *rotator) status(ctx context.Context) (*trustpb.RotationStatus, error) {
	ctx, cancel := r.g.Request(ctx)
	defer cancel()
	return r.c.GetRotation(ctx, &trustpb.GetRotationRequest{})
}

// walk takes the three steps with the waits between them.
func (r *rotator) walk(ctx context.Context, overlap time.Duration, overlapGiven bool) error {
	st, err := r.status(ctx)
	if err != nil {
		return err
	}
	if st.GetPhase() != "steady" {
		return Hint(fmt.Errorf("a rotation is under way (phase %q)", st.GetPhase()),
			"finish it step by step: 'meridianctl trust rotate activate' or 'retire' (see 'meridianctl trust rotate status')")
	}
	old := st.GetCurrentRoot()
	ttl := st.GetSvidTtl().AsDuration()
	for i, s := range rotationSteps {
		if err := r.step(ctx, s, true); err != nil {
			return err
		}
		if i == len(rotationSteps)-1 {
			break
		}
		wait, why := overlap, "--overlap"
		if !overlapGiven {
			wait, why = ttl/2, "half the SVID TTL: workloads renewing by CSR fetch the new bundle"
			if s == trustpb.RotationStep_ROTATION_STEP_ACTIVATE {
				wait, why = ttl, "one SVID TTL: no SVID under the old root is left"
			}
		}
		if wait > 0 {
			fmt.Fprintf(r.g.Out, "waiting %v (%s)\n", wait, why)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	st, err = r.status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.g.Out, "root rotated: %.16s → %.16s, in every cluster's bundle alone\n", old, st.GetCurrentRoot())
	return nil
}

// step takes one step and, when asked to, waits until every cluster has
// caught up with it, printing who is behind as it changes.
func (r *rotator) step(ctx context.Context, s trustpb.RotationStep, wait bool) error {
	rctx, cancel := r.g.Request(ctx)
	st, err := r.c.Rotate(rctx, &trustpb.RotateRequest{Step: s, Force: r.force})
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.g.Out, "%s: %s (root holder %s, bundle %d)\n", exchange.StepName(s), stepDoes(s, st), st.GetRootHolder(), st.GetSequence())
	if !wait {
		return nil
	}
	return r.waitCaughtUp(ctx, s, st)
}

// waitCaughtUp polls until every cluster has caught up with step s, for
// at most --wait-timeout: every poll and the pause between them end with
// it. A failed poll is retried until then (the root holder's leader may
// be changing hands); the error names the clusters that lag and why, or
// the last poll's error.
func (r *rotator) waitCaughtUp(ctx context.Context, s trustpb.RotationStep, st *trustpb.RotationStatus) error {
	wctx, cancel := context.WithTimeout(ctx, r.waitTimeout)
	defer cancel()
	var behind []string
	var pollErr error
	last := ""
	for {
		if st != nil {
			behind = exchange.Behind(st, s)
			if len(behind) == 0 {
				fmt.Fprintf(r.g.Out, "  every cluster has caught up (%d)\n", len(st.GetClusters()))
				return nil
			}
			if now := strings.Join(behind, "; "); now != last {
				last = now
				fmt.Fprintf(r.g.Out, "  waiting for %s\n", now)
			}
		}
		select {
		case <-wctx.Done():
			return r.waitFailed(ctx, s, behind, pollErr)
		case <-time.After(r.poll):
		}
		prev := pollErr
		if st, pollErr = r.status(wctx); pollErr != nil && wctx.Err() == nil && (prev == nil || prev.Error() != pollErr.Error()) {
			fmt.Fprintf(r.g.Err, "  asking how far the clusters are: %v (retrying)\n", pollErr)
		}
	}
}

// waitFailed is the error of a wait that ended without every cluster
// caught up.
func (r *rotator) waitFailed(ctx context.Context, s trustpb.RotationStep, behind []string, pollErr error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	next := "the old root is retired; a cluster that lags merges the bundle once it reaches the mesh"
	if i := slices.Index(rotationSteps, s); i < len(rotationSteps)-1 {
		next = fmt.Sprintf("once it has caught up, go on with 'meridianctl trust rotate %s' (--force goes on without it, and its handshakes may fail)", exchange.StepName(rotationSteps[i+1]))
	}
	hint := "a cluster that stays behind may be cut off or down (see 'meridianctl status' and 'meridianctl trust rotate status'); " + next
	if len(behind) == 0 {
		return Hint(fmt.Errorf("%s: could not learn within --wait-timeout %v whether every cluster caught up: %w", exchange.StepName(s), r.waitTimeout, pollErr), hint)
	}
	return Hint(fmt.Errorf("%s: %d cluster(s) did not catch up within --wait-timeout %v: %s", exchange.StepName(s), len(behind), r.waitTimeout, strings.Join(behind, "; ")), hint)
}

func stepDoes(s trustpb.RotationStep, st *trustpb.RotationStatus) string {
	switch s {
	case trustpb.RotationStep_ROTATION_STEP_PREPARE:
		return fmt.Sprintf("a new root joins every bundle (%d roots)", len(st.GetRoots()))
	case trustpb.RotationStep_ROTATION_STEP_ACTIVATE:
		return fmt.Sprintf("root %.16s signs every cluster's intermediate now", st.GetCurrentRoot())
	}
	return fmt.Sprintf("the old root leaves every bundle (%d root left)", len(st.GetRoots()))
}

func printRotation(w *tabwriter.Writer, st *trustpb.RotationStatus) {
	fmt.Fprintf(w, "root holder\t%s\nphase\t%s\ncurrent root\t%.16s\nbundle\t%d (%d roots)\nSVID TTL\t%v\n\n",
		st.GetRootHolder(), st.GetPhase(), st.GetCurrentRoot(), st.GetSequence(), len(st.GetRoots()), st.GetSvidTtl().AsDuration())
	fmt.Fprintln(w, "CLUSTER\tSTATE\tBUNDLE\tROOTS\tINTERMEDIATE SIGNED BY")
	for _, c := range st.GetClusters() {
		if !c.GetPublished() {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t(no trust state published)\n", c.GetCluster(), c.GetState())
			continue
		}
		issuer := fmt.Sprintf("%.16s", c.GetIssuer())
		if c.GetIssuer() == st.GetCurrentRoot() {
			issuer += " (current)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", c.GetCluster(), c.GetState(), c.GetSequence(), len(c.GetRoots()), issuer)
	}
}
