package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ResidencyRule says where a service's endpoints may be: only endpoints in
// an allowed region and in a cluster matching the cluster selector are ever
// sent to any client, at any priority, during any failover. When every
// allowed endpoint is down, requests fail rather than leave. Several rules
// on one service all apply: an endpoint must satisfy every enforced rule.
type ResidencyRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ResidencyRuleSpec `json:"spec"`
	Status *Status           `json:"status,omitempty"`
}

// ResidencyRuleSpec is the allowed set. With both AllowedRegions and
// ClusterSelector, an endpoint must satisfy both.
type ResidencyRuleSpec struct {
	// Selector picks the services the rule applies to.
	Selector ServiceSelector `json:"selector,omitempty"`
	// AllowedRegions are the regions the services' endpoints may run in.
	AllowedRegions []string `json:"allowedRegions,omitempty"`
	// ClusterSelector matches the labels of the clusters the endpoints may
	// run in, e.g. matchLabels {jurisdiction: eu}.
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	// Mode is enforce (the default) or audit: serve as usual and report
	// what enforcement would block.
	Mode ResidencyMode `json:"mode,omitempty"`
}

// ResidencyMode is how a rule acts.
type ResidencyMode string

// Residency modes.
const (
	ResidencyEnforce ResidencyMode = "enforce"
	ResidencyAudit   ResidencyMode = "audit"
)

// Values lists the valid modes.
func (ResidencyMode) Values() []string { return []string{"enforce", "audit"} }

// Enforced reports whether the rule removes endpoints (the empty mode
// means enforce).
func (s *ResidencyRuleSpec) Enforced() bool { return s.Mode != ResidencyAudit }

// Validate checks the rule on its own.
func (r *ResidencyRule) Validate() field.ErrorList {
	errs := validateMeta(&r.ObjectMeta)
	spec := field.NewPath("spec")
	s := &r.Spec
	errs = append(errs, s.Selector.validate(spec.Child("selector"))...)
	if len(s.AllowedRegions) == 0 && s.ClusterSelector == nil {
		errs = append(errs, field.Required(spec, "set allowedRegions, clusterSelector or both"))
	}
	seen := map[string]bool{}
	for i, reg := range s.AllowedRegions {
		p := spec.Child("allowedRegions").Index(i)
		errs = append(errs, validateRegion(reg, p)...)
		if seen[reg] {
			errs = append(errs, field.Duplicate(p, reg))
		}
		seen[reg] = true
	}
	if s.ClusterSelector != nil {
		p := spec.Child("clusterSelector")
		errs = append(errs, metav1validation.ValidateLabelSelector(s.ClusterSelector, metav1validation.LabelSelectorValidationOptions{}, p)...)
		if len(s.ClusterSelector.MatchLabels) == 0 && len(s.ClusterSelector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(p, "{}", "an empty selector matches every cluster: residency would allow everything"))
		}
	}
	return append(errs, validateEnum(s.Mode, false, spec.Child("mode"))...)
}
