package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// FailoverPolicy says where a service's traffic goes when the client's own
// zone and region lack healthy capacity, how it is spread across
// localities, and how proxies eject failing endpoints. It is Istio's
// DestinationRule localityLbSetting plus outlierDetection, as an object of
// its own because failover is decided per mesh, not per route.
type FailoverPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FailoverPolicySpec `json:"spec"`
	Status *Status            `json:"status,omitempty"`
}

// FailoverPolicySpec is the desired failover behaviour. Failover and
// FailoverPriority are two ways of giving the order; a policy uses one.
type FailoverPolicySpec struct {
	// Selector picks the services the policy applies to.
	Selector ServiceSelector `json:"selector,omitempty"`
	// Failover gives, for clients in a region, the other regions to fail
	// over to, in order. Priority 0 is the client's zone, 1 the rest of its
	// region, then each listed region; unlisted regions come last, together.
	Failover []RegionFailover `json:"failover,omitempty"`
	// FailoverPriority is an ordered list of labels, as Istio's
	// failoverPriority: endpoints that match the client on every label get
	// priority 0, those matching all but the last get the next priority,
	// and so on. Labels are region, zone, subzone, cluster, network (or
	// their topology.kubernetes.io / topology.istio.io names) or any label
	// of the clusters, such as jurisdiction.
	FailoverPriority []string `json:"failoverPriority,omitempty"`
	// Distribute sets explicit locality weights for clients in a locality:
	// the target localities form the first priority, weighted as given;
	// other localities stay behind them in failover order.
	Distribute []Distribute `json:"distribute,omitempty"`
	// OutlierDetection is sent to the proxies of the selected services'
	// clients.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
}

// RegionFailover is one failover order.
type RegionFailover struct {
	// From is the clients' region.
	From string `json:"from"`
	// To are the regions to fail over to, most preferred first.
	To []string `json:"to"`
}

// Distribute spreads the traffic of clients in From across localities.
type Distribute struct {
	// From is the clients' locality pattern, e.g. "us-east-1/use1-az1/*".
	From LocalityPattern `json:"from"`
	// To are the target locality patterns with their weights, percentages
	// summing to 100. A locality matched by several patterns takes the most
	// specific one.
	To []DistributeTarget `json:"to"`
}

// DistributeTarget is one weighted target of a Distribute rule.
type DistributeTarget struct {
	Locality LocalityPattern `json:"locality"`
	// Weight is a percentage, 1 to 100.
	Weight int32 `json:"weight"`
}

// Well-known names of FailoverPriority labels and their Kubernetes/Istio
// aliases.
var topologyLabels = map[string]string{
	"region":                        "region",
	"topology.kubernetes.io/region": "region",
	"zone":                          "zone",
	"topology.kubernetes.io/zone":   "zone",
	"subzone":                       "subzone",
	"topology.istio.io/subzone":     "subzone",
	"cluster":                       "cluster",
	"topology.istio.io/cluster":     "cluster",
	"network":                       "network",
	"topology.istio.io/network":     "network",
}

// TopologyLabel maps a FailoverPriority label to its canonical name
// ("region", "zone", "subzone", "cluster", "network"), or returns "" for a
// cluster label.
func TopologyLabel(label string) string { return topologyLabels[label] }

// Validate checks the policy on its own.
func (p *FailoverPolicy) Validate() field.ErrorList {
	errs := validateMeta(&p.ObjectMeta)
	spec := field.NewPath("spec")
	s := &p.Spec
	errs = append(errs, s.Selector.validate(spec.Child("selector"))...)
	if len(s.Failover) == 0 && len(s.FailoverPriority) == 0 && len(s.Distribute) == 0 && s.OutlierDetection == nil {
		errs = append(errs, field.Required(spec, "set at least one of failover, failoverPriority, distribute, outlierDetection"))
	}
	if len(s.Failover) > 0 && len(s.FailoverPriority) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("failoverPriority"), "failover and failoverPriority both give the order: use one"))
	}
	errs = append(errs, validateFailover(s.Failover, spec.Child("failover"))...)
	errs = append(errs, validateFailoverPriority(s.FailoverPriority, spec.Child("failoverPriority"))...)
	errs = append(errs, validateDistribute(s.Distribute, spec.Child("distribute"))...)
	return append(errs, s.OutlierDetection.validate(spec.Child("outlierDetection"))...)
}

func validateFailover(fs []RegionFailover, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seenFrom := map[string]bool{}
	for i, f := range fs {
		p := path.Index(i)
		errs = append(errs, validateRegion(f.From, p.Child("from"))...)
		if seenFrom[f.From] {
			errs = append(errs, field.Duplicate(p.Child("from"), f.From))
		}
		seenFrom[f.From] = true
		if len(f.To) == 0 {
			errs = append(errs, field.Required(p.Child("to"), "list the regions to fail over to"))
		}
		seenTo := map[string]bool{}
		for j, r := range f.To {
			pj := p.Child("to").Index(j)
			errs = append(errs, validateRegion(r, pj)...)
			switch {
			case r == f.From:
				errs = append(errs, field.Invalid(pj, r, "cycle: a region cannot fail over to itself (its own zones already come first)"))
			case seenTo[r]:
				errs = append(errs, field.Duplicate(pj, r))
			}
			seenTo[r] = true
		}
	}
	return errs
}

func validateFailoverPriority(ls []string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, l := range ls {
		p := path.Index(i)
		canon := l
		if t := TopologyLabel(l); t != "" {
			canon = t
		} else {
			for _, msg := range validation.IsQualifiedName(l) {
				errs = append(errs, field.Invalid(p, l, msg))
			}
		}
		if seen[canon] {
			errs = append(errs, field.Duplicate(p, l))
		}
		seen[canon] = true
	}
	return errs
}

func validateDistribute(ds []Distribute, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seenFrom := map[LocalityPattern]bool{}
	for i, d := range ds {
		p := path.Index(i)
		errs = append(errs, d.From.validate(p.Child("from"))...)
		if seenFrom[d.From] {
			errs = append(errs, field.Duplicate(p.Child("from"), d.From))
		}
		seenFrom[d.From] = true
		if len(d.To) == 0 {
			errs = append(errs, field.Required(p.Child("to"), "list the target localities and their weights"))
			continue
		}
		seenTo := map[LocalityPattern]bool{}
		var sum int64
		for j, t := range d.To {
			pj := p.Child("to").Index(j)
			errs = append(errs, t.Locality.validate(pj.Child("locality"))...)
			if seenTo[t.Locality] {
				errs = append(errs, field.Duplicate(pj.Child("locality"), t.Locality))
			}
			seenTo[t.Locality] = true
			if t.Weight < 1 || t.Weight > 100 {
				errs = append(errs, field.Invalid(pj.Child("weight"), t.Weight, "must be between 1 and 100 (keep traffic out of a locality with a ResidencyRule)"))
			}
			sum += int64(t.Weight)
		}
		if sum != 100 {
			errs = append(errs, field.Invalid(p.Child("to"), sum, "weights must sum to 100"))
		}
	}
	return errs
}
