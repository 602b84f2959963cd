package exchange

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/trust/service"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

// A rotation step asked of the wrong meridiand is answered with a
// google.rpc.ErrorInfo of one of these reasons, in ErrorDomain; its
// metadata "leader" names the meridiand to ask instead, when known.
const (
	ReasonNotLeader     = "NOT_LEADER"      // a follower of the root holder (Unavailable)
	ReasonNotRootHolder = "NOT_ROOT_HOLDER" // another cluster (FailedPrecondition)
	ErrorDomain         = "meridian.io"
)

// Register adds the RootRotation service (meridianctl trust rotate) to a
// gRPC server.
func (x *Exchange) Register(g grpc.ServiceRegistrar) {
	trustpb.RegisterRootRotationServer(g, &rotation{x: x})
}

type rotation struct {
	trustpb.UnimplementedRootRotationServer
	x *Exchange
}

func (r *rotation) GetRotation(context.Context, *trustpb.GetRotationRequest) (*trustpb.RotationStatus, error) {
	return r.x.Status(), nil
}

// Rotate takes one step on the root holder's leading replica, after
// checking that every cluster has caught up with the step before (unless
// forced), publishes the result at once, and returns the status.
func (r *rotation) Rotate(ctx context.Context, req *trustpb.RotateRequest) (*trustpb.RotationStatus, error) {
	x := r.x
	step := StepName(req.GetStep())
	if step == "" {
		return nil, status.Error(codes.InvalidArgument, "step: want prepare, activate or retire")
	}
	if !service.LocalCaller(ctx) {
		x.m.steps.WithLabelValues(step, "refused").Inc()
		return nil, status.Error(codes.PermissionDenied, "root rotation steps are taken only for callers on meridiand's own host")
	}
	if !x.cfg.Leading() {
		x.m.steps.WithLabelValues(step, "refused").Inc()
		return nil, redirect(codes.Unavailable, ReasonNotLeader, x.cfg.Leader(), "this replica does not lead cluster %s: its leader takes rotation steps", x.cfg.Cluster)
	}
	root, err := x.cfg.Trust.Root(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	st := x.Status()
	if root == nil {
		x.m.steps.WithLabelValues(step, "refused").Inc()
		holder := slices.IndexFunc(st.GetClusters(), func(c *trustpb.ClusterTrust) bool { return c.GetRootHolder() })
		if holder < 0 {
			return nil, redirect(codes.FailedPrecondition, ReasonNotRootHolder, "", "cluster %s does not hold the root, and no cluster has published that it does", x.cfg.Cluster)
		}
		return nil, redirect(codes.FailedPrecondition, ReasonNotRootHolder, x.holderAddr(st.GetRootHolder()),
			"cluster %s does not hold the root: cluster %s does", x.cfg.Cluster, st.GetRootHolder())
	}
	if err := ready(st, req.GetStep(), req.GetForce()); err != nil {
		x.m.steps.WithLabelValues(step, "refused").Inc()
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	switch req.GetStep() {
	case trustpb.RotationStep_ROTATION_STEP_PREPARE:
		_, err = x.cfg.Trust.PrepareRootRotation(ctx)
	case trustpb.RotationStep_ROTATION_STEP_ACTIVATE:
		if err = x.cfg.Trust.ActivateRoot(ctx); err == nil {
			x.reissued()
		}
	case trustpb.RotationStep_ROTATION_STEP_RETIRE:
		_, err = x.cfg.Trust.RetireRootRotation(ctx)
	}
	if err != nil {
		x.m.steps.WithLabelValues(step, "error").Inc()
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	x.m.steps.WithLabelValues(step, "ok").Inc()
	x.log.Info("root rotation step taken", "step", step)
	if err := x.publish(ctx); err != nil {
		x.log.Warn("publishing after a rotation step; the publisher retries", "err", err)
	}
	return x.Status(), nil
}

// ready checks that a step may be taken: the phase it follows, and every
// cluster caught up with that phase (unless forced).
func ready(st *trustpb.RotationStatus, step trustpb.RotationStep, force bool) error {
	want, before := map[trustpb.RotationStep]string{
		trustpb.RotationStep_ROTATION_STEP_PREPARE:  service.PhaseSteady,
		trustpb.RotationStep_ROTATION_STEP_ACTIVATE: service.PhasePrepared,
		trustpb.RotationStep_ROTATION_STEP_RETIRE:   service.PhaseActivated,
	}[step], map[trustpb.RotationStep]trustpb.RotationStep{
		trustpb.RotationStep_ROTATION_STEP_PREPARE:  trustpb.RotationStep_ROTATION_STEP_RETIRE,
		trustpb.RotationStep_ROTATION_STEP_ACTIVATE: trustpb.RotationStep_ROTATION_STEP_PREPARE,
		trustpb.RotationStep_ROTATION_STEP_RETIRE:   trustpb.RotationStep_ROTATION_STEP_ACTIVATE,
	}[step]
	if st.GetPhase() != "" && st.GetPhase() != want {
		return fmt.Errorf("%s follows the %s phase; the rotation is %s", StepName(step), want, st.GetPhase())
	}
	if behind := Behind(st, before); len(behind) > 0 && !force {
		return fmt.Errorf("not every cluster has caught up with the mesh's trust state yet (%s); wait, or force and accept failed handshakes there", strings.Join(behind, "; "))
	}
	return nil
}

// Behind lists the clusters, other than dead or gone ones, that have not
// caught up with a step yet, each with the reason: prepare and retire
// are caught up with when a cluster holds the root holder's bundle
// (sequence), activate when its intermediate is signed by the current
// root.
func Behind(st *trustpb.RotationStatus, step trustpb.RotationStep) []string {
	var out []string
	for _, c := range st.GetClusters() {
		name := c.GetCluster()
		if s := c.GetState(); s != "" && s != "alive" {
			name += " (" + s + ")" // suspect: maybe cut off, and why it lags
		}
		switch {
		case c.GetState() == "dead" || c.GetState() == "left" || c.GetState() == "gone":
		case !c.GetPublished():
			out = append(out, name+": no trust state published")
		case step == trustpb.RotationStep_ROTATION_STEP_ACTIVATE && c.GetIssuer() != st.GetCurrentRoot():
			out = append(out, fmt.Sprintf("%s: intermediate signed by %.12s, not by the current root %.12s", name, c.GetIssuer(), st.GetCurrentRoot()))
		case step != trustpb.RotationStep_ROTATION_STEP_ACTIVATE && c.GetSequence() < st.GetSequence():
			out = append(out, fmt.Sprintf("%s: holds bundle %d of %d", name, c.GetSequence(), st.GetSequence()))
		}
	}
	return out
}

// StepName is a step's name on the command line: prepare, activate or
// retire ("" for none).
func StepName(s trustpb.RotationStep) string {
	switch s {
	case trustpb.RotationStep_ROTATION_STEP_PREPARE, trustpb.RotationStep_ROTATION_STEP_ACTIVATE, trustpb.RotationStep_ROTATION_STEP_RETIRE:
		return strings.ToLower(strings.TrimPrefix(s.String(), "ROTATION_STEP_"))
	}
	return ""
}

func redirect(code codes.Code, reason, leader, format string, args ...any) error {
	st := status.New(code, fmt.Sprintf(format, args...))
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: map[string]string{}}
	if leader != "" {
		info.Metadata["leader"] = leader
	}
	if d, err := st.WithDetails(info); err == nil {
		st = d
	}
	return st.Err()
}

// holderAddr is the API address the root holder published.
func (x *Exchange) holderAddr(cluster string) string {
	r, ok := x.cfg.Store.Snapshot().Get(key(KindStatus, cluster))
	if !ok {
		return ""
	}
	st, err := decodeStatus(r.Spec)
	if err != nil {
		return ""
	}
	return st.APIAddr
}

// Status is the mesh's trust state as this replica's store holds it: the
// root holder's phase and bundle, and every cluster's bundle and
// intermediate issuer.
func (x *Exchange) Status() *trustpb.RotationStatus {
	var states map[string]string
	if x.cfg.Clusters != nil {
		states = x.cfg.Clusters()
	}
	out := &trustpb.RotationStatus{}
	seen := map[string]bool{}
	for _, r := range x.cfg.Store.Snapshot().List(KindStatus) {
		st, err := decodeStatus(r.Spec)
		if err != nil {
			continue
		}
		state, known := states[r.Name]
		if states != nil && !known {
			state = "gone"
		}
		seen[r.Name] = true
		out.Clusters = append(out.Clusters, &trustpb.ClusterTrust{
			Cluster: r.Name, State: state, Published: true, Sequence: st.Sequence, Roots: st.Roots, Issuer: st.Issuer, RootHolder: st.RootHolder,
		})
		if st.RootHolder {
			out.RootHolder, out.Phase, out.CurrentRoot, out.Roots, out.Sequence = r.Name, st.Phase, st.CurrentRoot, st.Roots, st.Sequence
			out.SvidTtl = durationpb.New(st.SVIDTTL)
		}
	}
	for name, state := range states {
		if !seen[name] {
			out.Clusters = append(out.Clusters, &trustpb.ClusterTrust{Cluster: name, State: state})
		}
	}
	slices.SortFunc(out.Clusters, func(a, b *trustpb.ClusterTrust) int { return strings.Compare(a.GetCluster(), b.GetCluster()) })
	return out
}
