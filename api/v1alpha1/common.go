package v1alpha1

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// ServiceSelector picks services in the policy's own namespace. An empty
// selector picks every service of the namespace; with both fields set, a
// service must satisfy both.
type ServiceSelector struct {
	// Services lists service names.
	Services []string `json:"services,omitempty"`
	// Labels matches the services' labels.
	Labels *metav1.LabelSelector `json:"labels,omitempty"`
}

// Matches reports whether the selector picks a service of the policy's
// namespace with the given name and labels. It assumes a valid selector.
func (s ServiceSelector) Matches(name string, lbls map[string]string) bool {
	if len(s.Services) > 0 && !slices.Contains(s.Services, name) {
		return false
	}
	if s.Labels == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(s.Labels)
	return err == nil && sel.Matches(labels.Set(lbls))
}

func (s ServiceSelector) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, n := range s.Services {
		p := path.Child("services").Index(i)
		for _, msg := range validation.IsDNS1035Label(n) {
			errs = append(errs, field.Invalid(p, n, msg))
		}
		if seen[n] {
			errs = append(errs, field.Duplicate(p, n))
		}
		seen[n] = true
	}
	if s.Labels != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Labels, metav1validation.LabelSelectorValidationOptions{}, path.Child("labels"))...)
	}
	return errs
}

// OutlierDetection is how proxies eject failing endpoints on their own,
// within a second or two, before any control plane notices. Unset fields
// take the defaults of DefaultOutlierDetection.
type OutlierDetection struct {
	// Consecutive5xxErrors ejects an endpoint after this many 5xx
	// responses (or gRPC UNAVAILABLE, resets, connect failures) in a row;
	// 0 disables the check.
	Consecutive5xxErrors *int32 `json:"consecutive5xxErrors,omitempty"`
	// ConsecutiveGatewayErrors ejects after this many 502, 503 or 504 in a
	// row; 0 disables the check.
	ConsecutiveGatewayErrors *int32 `json:"consecutiveGatewayErrors,omitempty"`
	// Interval between ejection sweeps.
	Interval *metav1.Duration `json:"interval,omitempty"`
	// BaseEjectionTime is the first ejection's length; it grows with each
	// further ejection of the same endpoint.
	BaseEjectionTime *metav1.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionPercent caps the share of a service's endpoints ejected at
	// once.
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// DefaultOutlierDetection is Meridian's default: faster than Istio's
// (5 errors, 10 s interval, 30 s ejection) so that failover starts within
// a second or two, as DESIGN.md asks.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{
		Consecutive5xxErrors:     ptr[int32](3),
		ConsecutiveGatewayErrors: ptr[int32](3),
		Interval:                 &metav1.Duration{Duration: 1e9},
		BaseEjectionTime:         &metav1.Duration{Duration: 15e9},
		MaxEjectionPercent:       ptr[int32](100),
	}
}

// WithDefaults returns a copy with every unset field taken from
// DefaultOutlierDetection.
func (o OutlierDetection) WithDefaults() OutlierDetection {
	d := DefaultOutlierDetection()
	if o.Consecutive5xxErrors != nil {
		d.Consecutive5xxErrors = o.Consecutive5xxErrors
	}
	if o.ConsecutiveGatewayErrors != nil {
		d.ConsecutiveGatewayErrors = o.ConsecutiveGatewayErrors
	}
	if o.Interval != nil {
		d.Interval = o.Interval
	}
	if o.BaseEjectionTime != nil {
		d.BaseEjectionTime = o.BaseEjectionTime
	}
	if o.MaxEjectionPercent != nil {
		d.MaxEjectionPercent = o.MaxEjectionPercent
	}
	return d
}

func (o *OutlierDetection) validate(path *field.Path) field.ErrorList {
	if o == nil {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, nonNegative(o.Consecutive5xxErrors, path.Child("consecutive5xxErrors"))...)
	errs = append(errs, nonNegative(o.ConsecutiveGatewayErrors, path.Child("consecutiveGatewayErrors"))...)
	errs = append(errs, positiveDuration(o.Interval, path.Child("interval"))...)
	errs = append(errs, positiveDuration(o.BaseEjectionTime, path.Child("baseEjectionTime"))...)
	if o.MaxEjectionPercent != nil && (*o.MaxEjectionPercent < 0 || *o.MaxEjectionPercent > 100) {
		errs = append(errs, field.Invalid(path.Child("maxEjectionPercent"), *o.MaxEjectionPercent, "must be between 0 and 100"))
	}
	return errs
}

func ptr[T any](v T) *T { return &v }

func nonNegative(v *int32, path *field.Path) field.ErrorList {
	if v != nil && *v < 0 {
		return field.ErrorList{field.Invalid(path, *v, "must not be negative")}
	}
	return nil
}

func positiveDuration(d *metav1.Duration, path *field.Path) field.ErrorList {
	if d != nil && d.Duration <= 0 {
		return field.ErrorList{field.Invalid(path, d.Duration.String(), "must be a positive duration")}
	}
	return nil
}

func percent(v float64, path *field.Path) field.ErrorList {
	if !(v >= 0 && v <= 100) { // also rejects NaN
		return field.ErrorList{field.Invalid(path, v, "must be a percentage between 0 and 100")}
	}
	return nil
}

// enum is implemented by the string types whose values are a fixed list;
// validation and the CRD generator both read the list from here.
type enum interface{ Values() []string }

func validateEnum[E interface {
	~string
	enum
}](v E, required bool, path *field.Path) field.ErrorList {
	if v == "" {
		if required {
			return field.ErrorList{field.Required(path, "want one of "+strings.Join(v.Values(), ", "))}
		}
		return nil
	}
	if !slices.Contains(v.Values(), string(v)) {
		return field.ErrorList{field.NotSupported(path, v, v.Values())}
	}
	return nil
}

func validateMeta(m *metav1.ObjectMeta) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("metadata")
	if m.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
			errs = append(errs, field.Invalid(path.Child("name"), m.Name, msg))
		}
	}
	if m.Namespace == "" {
		errs = append(errs, field.Required(path.Child("namespace"), "policies are namespaced"))
	} else {
		for _, msg := range validation.IsDNS1123Label(m.Namespace) {
			errs = append(errs, field.Invalid(path.Child("namespace"), m.Namespace, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(m.Labels, path.Child("labels"))...)
	return errs
}

// validateHost checks a host name as routes and service entries use it: a
// DNS name, a wildcard "*.suffix", or "*" when allowStar.
func validateHost(h string, allowStar bool, path *field.Path) field.ErrorList {
	switch {
	case h == "":
		return field.ErrorList{field.Required(path, "")}
	case h == "*":
		if allowStar {
			return nil
		}
		return field.ErrorList{field.Invalid(path, h, "a bare * is not allowed here")}
	case strings.HasPrefix(h, "*."):
		h = h[2:]
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(h) {
		errs = append(errs, field.Invalid(path, h, msg))
	}
	return errs
}

func validateHosts(hosts []string, allowStar bool, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, h := range hosts {
		errs = append(errs, validateHost(h, allowStar, path.Index(i))...)
		if seen[h] {
			errs = append(errs, field.Duplicate(path.Index(i), h))
		}
		seen[h] = true
	}
	return errs
}

func validatePort(p int32, path *field.Path) field.ErrorList {
	if p < 1 || p > 65535 {
		return field.ErrorList{field.Invalid(path, p, "must be between 1 and 65535")}
	}
	return nil
}

func validateRegion(r string, path *field.Path) field.ErrorList {
	if r == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsValidLabelValue(r) {
		errs = append(errs, field.Invalid(path, r, msg))
	}
	return errs
}

// LocalityPattern is "region[/zone[/subzone]]" where a trailing part may
// be "*" (any), and "*" alone matches every locality.
type LocalityPattern string

// Specificity is the number of parts that are not wildcards; a more
// specific pattern wins over a less specific one that also matches.
func (p LocalityPattern) Specificity() int {
	n := 0
	for _, part := range strings.Split(string(p), "/") {
		if part != "*" {
			n++
		}
	}
	return n
}

// Matches reports whether the pattern covers a locality. A pattern without
// a wildcard names exactly one locality: "us-east-1" matches only
// localities with no zone; write "us-east-1/*" for the whole region.
func (p LocalityPattern) Matches(l registry.Locality) bool {
	parts := strings.Split(string(p), "/")
	got := [3]string{l.Region, l.Zone, l.Subzone}
	for i := range 3 {
		if i >= len(parts) {
			return got[i] == ""
		}
		if parts[i] == "*" {
			return true
		}
		if parts[i] != got[i] {
			return false
		}
	}
	return true
}

func (p LocalityPattern) validate(path *field.Path) field.ErrorList {
	s := string(p)
	if s == "" {
		return field.ErrorList{field.Required(path, "want region[/zone[/subzone]], a trailing part may be *")}
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return field.ErrorList{field.Invalid(path, s, "at most three parts: region/zone/subzone")}
	}
	for i, part := range parts {
		if part == "*" {
			if i != len(parts)-1 {
				return field.ErrorList{field.Invalid(path, s, "only the last part may be *")}
			}
			continue
		}
		if part == "" {
			return field.ErrorList{field.Invalid(path, s, fmt.Sprintf("part %d is empty", i+1))}
		}
		for _, msg := range validation.IsValidLabelValue(part) {
			return field.ErrorList{field.Invalid(path, s, msg)}
		}
	}
	return nil
}
