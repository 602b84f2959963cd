package locality

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meridian-mesh/meridian/registry"
)

// Health merge. An endpoint's health, as clients get it, folds together in
// this order:
//  1. what its source reported (Kubernetes readiness: ready → healthy,
//     terminating → draining, not ready → unhealthy; the workload API's
//     own health);
//  2. its cluster's state from federation (View.EffectiveHealth): a dead
//     cluster's endpoints are unhealthy, a suspect or unreachable one's
//     healthy endpoints are stale and keep serving;
//  3. drills: endpoints inside a drained target are draining, unless
//     already unhealthy.
// Proxies add their own outlier ejection on top (Assignment.OutlierDetection),
// faster than any of these.

// TargetKind is what a drill takes down.
type TargetKind string

// Drill target kinds.
const (
	TargetRegion  TargetKind = "region"
	TargetZone    TargetKind = "zone"
	TargetCluster TargetKind = "cluster"
)

// Target is a drill target: a region ("us-east-1"), a zone
// ("us-east-1/use1-az1") or a cluster ("eks-use1").
type Target struct {
	Kind TargetKind `json:"kind"`
	Name string     `json:"name"`
}

func (t Target) String() string { return string(t.Kind) + " " + t.Name }

// ParseTarget checks a target as meridianctl drill gets it.
func ParseTarget(kind, name string) (Target, error) {
	t := Target{Kind: TargetKind(kind), Name: name}
	var msgs []string
	switch t.Kind {
	case TargetRegion:
		msgs = validation.IsValidLabelValue(name)
		if name == "" {
			msgs = append(msgs, "a region is required")
		}
	case TargetZone:
		l, err := registry.ParseLocality(name)
		switch {
		case err != nil:
			msgs = append(msgs, err.Error())
		case l.Zone == "" || l.Subzone != "":
			msgs = append(msgs, "a zone is written region/zone")
		}
	case TargetCluster:
		msgs = validation.IsDNS1123Label(name)
	default:
		return Target{}, fmt.Errorf("locality: drill target kind %q: want region, zone or cluster", kind)
	}
	if len(msgs) > 0 {
		return Target{}, fmt.Errorf("locality: drill target %s %q: %s", kind, name, strings.Join(msgs, "; "))
	}
	return t, nil
}

// Covers reports whether an endpoint is inside the target.
func (t Target) Covers(e *registry.Endpoint) bool {
	switch t.Kind {
	case TargetRegion:
		return e.Locality.Region == t.Name
	case TargetZone:
		region, zone, _ := strings.Cut(t.Name, "/")
		return e.Locality.Region == region && e.Locality.Zone == zone
	case TargetCluster:
		return e.Cluster == t.Name
	}
	return false
}

func mergeHealth(v *registry.View, e *registry.Endpoint, drains []Target) Endpoint {
	h, since := v.EffectiveHealth(e)
	out := Endpoint{Endpoint: e, Health: h, StaleSince: since}
	if h != e.Health {
		st := v.Status(e.Cluster).State
		out.HealthReason = &Reason{Rule: fmt.Sprintf("cluster %s is %s", e.Cluster, st)}
	}
	if h == registry.Unhealthy {
		return out
	}
	for _, t := range drains {
		if t.Covers(e) {
			out.Health = registry.Draining
			out.HealthReason = &Reason{Rule: "drained by the drill of " + t.String()}
			break
		}
	}
	return out
}
