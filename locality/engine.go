package locality

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// Config is what an Engine decides with.
type Config struct {
	// Policies may hold objects of any kind; the engine reads
	// FailoverPolicy, ResidencyRule and DestinationPolicy (for outlier
	// detection) and ignores the rest. Each must pass its Validate.
	Policies []v1alpha1.Object
	// Drains are drill targets: their endpoints are Draining.
	Drains []Target
}

// Engine computes assignments under one set of policies and drills. It is
// immutable and safe for concurrent use; a new policy set is a new Engine.
type Engine struct {
	cfg       Config
	failover  []*failoverPolicy
	residency []*residencyRule
	outliers  []*destinationOutlier
	// What a client's assignment depends on beyond its locality, for
	// ClientKey.
	usesCluster, usesNetwork bool
	labelKeys                []string
}

// New compiles a policy set. It refuses objects that fail Validate.
func New(cfg Config) (*Engine, error) {
	e := &Engine{cfg: cfg}
	objs := slices.Clone(cfg.Policies)
	// Policy order decides ties (two failover policies on one service):
	// make it independent of the caller's order.
	slices.SortFunc(objs, func(a, b v1alpha1.Object) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	keys := map[string]bool{}
	for _, o := range objs {
		if errs := o.Validate(); len(errs) > 0 {
			return nil, fmt.Errorf("locality: %s: %w", v1alpha1.Describe(o), errs.ToAggregate())
		}
		switch o := o.(type) {
		case *v1alpha1.FailoverPolicy:
			f := compileFailover(o)
			e.failover = append(e.failover, f)
			for _, l := range f.labels {
				switch l {
				case "cluster":
					e.usesCluster = true
				case "network":
					e.usesNetwork = true
				case "region", "zone", "subzone":
				default:
					keys[l] = true
				}
			}
		case *v1alpha1.ResidencyRule:
			r, err := compileResidency(o)
			if err != nil {
				return nil, err
			}
			e.residency = append(e.residency, r)
		case *v1alpha1.DestinationPolicy:
			if o.Spec.OutlierDetection == nil {
				continue
			}
			ns, name, ok := v1alpha1.ServiceHost(o.Spec.Host, o.Namespace)
			if !ok {
				continue
			}
			e.outliers = append(e.outliers, &destinationOutlier{
				svc: registry.ServiceKey{Namespace: ns, Name: name},
				od:  *o.Spec.OutlierDetection,
				why: Reason{Rule: "outlier detection of the destination policy", Policy: v1alpha1.Describe(o), Field: "spec.outlierDetection"},
			})
		}
	}
	for k := range keys {
		e.labelKeys = append(e.labelKeys, k)
	}
	slices.Sort(e.labelKeys)
	return e, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config {
	if e == nil {
		return Config{}
	}
	return e.cfg
}

// WithDrains returns an engine with the same policies and these drains.
func (e *Engine) WithDrains(drains ...Target) *Engine {
	var cp Engine
	if e != nil {
		cp = *e
	}
	cp.cfg.Drains = drains
	return &cp
}

// ClientKey returns a string that is equal for two clients exactly when
// the engine gives them the same assignments: their locality, plus the
// cluster, network and cluster labels only when a policy reads them. The
// xDS server groups proxies by it and computes once per group.
func (e *Engine) ClientKey(c Client) string {
	var b strings.Builder
	b.WriteString(c.Locality.Region + "/" + c.Locality.Zone + "/" + c.Locality.Subzone)
	if e == nil {
		return b.String()
	}
	if e.usesCluster {
		b.WriteString("|c=" + c.Cluster)
	}
	if e.usesNetwork {
		b.WriteString("|n=" + c.Network)
	}
	for _, k := range e.labelKeys {
		b.WriteString("|" + k + "=" + c.Labels[k])
	}
	return b.String()
}

// failoverPolicy is a compiled FailoverPolicy.
type failoverPolicy struct {
	obj  *v1alpha1.FailoverPolicy
	name string // "Kind ns/name"
	// regions maps a client region to its failover order and the reasons
	// of each target's level.
	regions map[string]*regionOrder
	// labels is the canonical failover-priority label list; levelWhy[r] is
	// the reason of rank r.
	labels   []string
	levelWhy []Reason
	// distWhy[i] is the reason of distribute rule i's level;
	// distTargetWhy[i][j] the weight reason of its target j.
	distWhy       []Reason
	distTargetWhy [][]Reason
	od            *v1alpha1.OutlierDetection
}

type regionOrder struct {
	to       []string
	why      []Reason // per target
	otherWhy Reason   // regions not in the list
}

func compileFailover(o *v1alpha1.FailoverPolicy) *failoverPolicy {
	f := &failoverPolicy{obj: o, name: v1alpha1.Describe(o), regions: map[string]*regionOrder{}, od: o.Spec.OutlierDetection}
	for i, fo := range o.Spec.Failover {
		ro := &regionOrder{to: fo.To, otherWhy: Reason{
			Rule:   "regions not in the failover order of clients in " + fo.From,
			Policy: f.name, Field: fmt.Sprintf("spec.failover[%d]", i),
		}}
		for j, to := range fo.To {
			ro.why = append(ro.why, Reason{
				Rule:   fmt.Sprintf("failover to %s (choice %d for clients in %s)", to, j+1, fo.From),
				Policy: f.name, Field: fmt.Sprintf("spec.failover[%d].to[%d]", i, j),
			})
		}
		f.regions[fo.From] = ro
	}
	for _, l := range o.Spec.FailoverPriority {
		if t := v1alpha1.TopologyLabel(l); t != "" {
			l = t
		}
		f.labels = append(f.labels, l)
	}
	for r := 0; r <= len(f.labels); r++ {
		matched := f.labels[:len(f.labels)-r]
		rule := "matches the client on " + strings.Join(matched, ", ")
		if len(matched) == 0 {
			rule = "matches the client on none of " + strings.Join(f.labels, ", ")
		}
		f.levelWhy = append(f.levelWhy, Reason{Rule: rule, Policy: f.name, Field: "spec.failoverPriority"})
	}
	distributeReasons(f)
	return f
}

func (f *failoverPolicy) matches(svc registry.ServiceKey, lbls map[string]string) bool {
	return f.obj.Namespace == svc.Namespace && f.obj.Spec.Selector.Matches(svc.Name, lbls)
}

// distributeFor returns the most specific distribute rule for a client
// locality, or -1.
func (f *failoverPolicy) distributeFor(l registry.Locality) int {
	best, bestSpec := -1, -1
	for i, d := range f.obj.Spec.Distribute {
		if d.From.Matches(l) && d.From.Specificity() > bestSpec {
			best, bestSpec = i, d.From.Specificity()
		}
	}
	return best
}

// residencyRule is a compiled ResidencyRule.
type residencyRule struct {
	obj      *v1alpha1.ResidencyRule
	clusters labels.Selector // nil: any cluster
	why      Reason
}

func compileResidency(o *v1alpha1.ResidencyRule) (*residencyRule, error) {
	r := &residencyRule{obj: o}
	if o.Spec.ClusterSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(o.Spec.ClusterSelector)
		if err != nil {
			return nil, fmt.Errorf("locality: %s: spec.clusterSelector: %w", v1alpha1.Describe(o), err)
		}
		r.clusters = sel
	}
	var parts []string
	if len(o.Spec.AllowedRegions) > 0 {
		parts = append(parts, "regions "+strings.Join(o.Spec.AllowedRegions, ", "))
	}
	if r.clusters != nil {
		parts = append(parts, "clusters with "+r.clusters.String())
	}
	mode := "enforce"
	if !o.Spec.Enforced() {
		mode = "audit"
	}
	r.why = Reason{Rule: "residency (" + mode + "): only " + strings.Join(parts, " and "), Policy: v1alpha1.Describe(o), Field: "spec"}
	return r, nil
}

func (r *residencyRule) matches(svc registry.ServiceKey, lbls map[string]string) bool {
	return r.obj.Namespace == svc.Namespace && r.obj.Spec.Selector.Matches(svc.Name, lbls)
}

// allows reports whether an endpoint in a locality and cluster may serve.
func (r *residencyRule) allows(l registry.Locality, cl *registry.Cluster) bool {
	if len(r.obj.Spec.AllowedRegions) > 0 && !slices.Contains(r.obj.Spec.AllowedRegions, l.Region) {
		return false
	}
	if r.clusters != nil {
		if cl == nil || !r.clusters.Matches(labels.Set(cl.Labels)) {
			return false
		}
	}
	return true
}

type destinationOutlier struct {
	svc registry.ServiceKey
	od  v1alpha1.OutlierDetection
	why Reason
}

var defaultOutlierReason = Reason{Rule: "Meridian's default outlier detection"}
