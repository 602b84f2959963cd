package v1alpha1

import (
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TrafficRoute routes requests for a set of hosts: matches, weighted
// destinations by version subset or by cluster, mirroring, faults, retries
// and timeouts. Istio users know it as VirtualService; destinations can
// also pin a cluster, so a canary across clusters needs no extra object.
type TrafficRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrafficRouteSpec `json:"spec"`
	Status *Status          `json:"status,omitempty"`
}

// MeshGateway, in TrafficRouteSpec.Gateways, means the sidecars.
const MeshGateway = "mesh"

// TrafficRouteSpec holds the routes, tried in order.
type TrafficRouteSpec struct {
	// Hosts the route applies to: a service ("name", "name.namespace" or
	// its full DNS name), a ServiceEntry host, or for gateways any DNS name
	// or wildcard ("*.example.com").
	Hosts []string `json:"hosts"`
	// Gateways that apply the route: names of Gateway objects in the same
	// namespace, and "mesh" for the sidecars. Empty means mesh.
	Gateways []string `json:"gateways,omitempty"`
	// HTTP routes, first match wins.
	HTTP []HTTPRoute `json:"http,omitempty"`
	// TCP routes (and TLS by SNI), first match wins.
	TCP []TCPRoute `json:"tcp,omitempty"`
}

// HTTPRoute is one HTTP rule.
type HTTPRoute struct {
	// Name shows up in metrics and access logs.
	Name string `json:"name,omitempty"`
	// Match: the route applies when any match holds; empty matches all.
	Match []HTTPMatch `json:"match,omitempty"`
	// Route lists the destinations; weights sum to 100 when there are
	// several.
	Route []RouteDestination `json:"route"`
	// Mirror sends a copy of requests to another destination and discards
	// the responses.
	Mirror *Mirror `json:"mirror,omitempty"`
	// Fault injects errors and delays.
	Fault *Fault `json:"fault,omitempty"`
	// Retries for failed requests.
	Retries *Retries `json:"retries,omitempty"`
	// Timeout for the whole request, retries included.
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// HTTPMatch holds when every field set holds.
type HTTPMatch struct {
	// Path matches the request path.
	Path *StringMatch `json:"path,omitempty"`
	// Method matches the request method (GET, POST, ...).
	Method string `json:"method,omitempty"`
	// Headers must all match.
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// StringMatch is exactly one of Exact, Prefix and Regex (RE2 syntax, as
// Envoy uses, matching the whole value).
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// HeaderMatch matches one request header.
type HeaderMatch struct {
	// Name of the header, case-insensitive.
	Name        string `json:"name"`
	StringMatch `json:",inline"`
}

// Destination is where a request goes.
type Destination struct {
	// Host is a service or ServiceEntry host.
	Host string `json:"host"`
	// Port is needed when the host has several ports.
	Port int32 `json:"port,omitempty"`
	// Subset is a version subset defined by the host's DestinationPolicy.
	Subset string `json:"subset,omitempty"`
	// Cluster pins the destination to one cluster's endpoints (residency
	// rules still apply).
	Cluster string `json:"cluster,omitempty"`
}

// RouteDestination is a weighted destination.
type RouteDestination struct {
	Destination `json:",inline"`
	// Weight is a percentage; it may be omitted for a single destination.
	Weight int32 `json:"weight,omitempty"`
}

// Mirror copies requests to a destination.
type Mirror struct {
	Destination `json:",inline"`
	// Percent of requests mirrored; default 100.
	Percent *float64 `json:"percent,omitempty"`
}

// Fault injects failures into a share of requests.
type Fault struct {
	Abort *FaultAbort `json:"abort,omitempty"`
	Delay *FaultDelay `json:"delay,omitempty"`
}

// FaultAbort answers a share of requests with an HTTP status.
type FaultAbort struct {
	Status  int32   `json:"status"`
	Percent float64 `json:"percent"`
}

// FaultDelay delays a share of requests.
type FaultDelay struct {
	Delay   metav1.Duration `json:"delay"`
	Percent float64         `json:"percent"`
}

// Retries is the retry policy of a route.
type Retries struct {
	// Attempts is the number of retries; 0 disables retries.
	Attempts int32 `json:"attempts"`
	// PerTryTimeout bounds each attempt.
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`
	// RetryOn lists the conditions that trigger a retry.
	RetryOn []RetryOn `json:"retryOn,omitempty"`
	// Budget caps retries as a share of active requests, so retries
	// cannot multiply an overload. It holds on the route's destination
	// services (Envoy keeps retry budgets with a cluster's circuit
	// breakers, so it covers every route to them); when several routes
	// set one for a service, the strictest holds.
	Budget *RetryBudget `json:"budget,omitempty"`
}

// RetryOn is one retry condition, as Envoy names them.
type RetryOn string

// Values lists the retry conditions.
func (RetryOn) Values() []string {
	return []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
		"cancelled", "deadline-exceeded", "resource-exhausted", "unavailable"}
}

// RetryBudget limits concurrent retries.
type RetryBudget struct {
	// Percent of active requests that may be retries.
	Percent float64 `json:"percent"`
	// MinRetryConcurrency is allowed whatever the percentage; 0 or unset
	// is Envoy's default, 3.
	MinRetryConcurrency int32 `json:"minRetryConcurrency,omitempty"`
}

// TCPRoute forwards connections.
type TCPRoute struct {
	// Match: the route applies when any match holds; empty matches all.
	Match []TCPMatch `json:"match,omitempty"`
	// Route lists the destinations; weights sum to 100 when there are
	// several.
	Route []RouteDestination `json:"route"`
}

// TCPMatch matches a connection.
type TCPMatch struct {
	// Port the client connected to.
	Port int32 `json:"port,omitempty"`
	// SNIHosts match the TLS server name, for TLS passed through.
	SNIHosts []string `json:"sniHosts,omitempty"`
}

// Validate checks the route on its own.
func (r *TrafficRoute) Validate() field.ErrorList {
	errs := validateMeta(&r.ObjectMeta)
	spec := field.NewPath("spec")
	s := &r.Spec
	if len(s.Hosts) == 0 {
		errs = append(errs, field.Required(spec.Child("hosts"), ""))
	}
	errs = append(errs, validateHosts(s.Hosts, true, spec.Child("hosts"))...)
	seen := map[string]bool{}
	for i, g := range s.Gateways {
		p := spec.Child("gateways").Index(i)
		if g != MeshGateway {
			for _, msg := range validation.IsDNS1123Subdomain(g) {
				errs = append(errs, field.Invalid(p, g, msg))
			}
		}
		if seen[g] {
			errs = append(errs, field.Duplicate(p, g))
		}
		seen[g] = true
	}
	if len(s.HTTP) == 0 && len(s.TCP) == 0 {
		errs = append(errs, field.Required(spec, "set http or tcp routes"))
	}
	names := map[string]bool{}
	for i := range s.HTTP {
		p := spec.Child("http").Index(i)
		if n := s.HTTP[i].Name; n != "" {
			if names[n] {
				errs = append(errs, field.Duplicate(p.Child("name"), n))
			}
			names[n] = true
		}
		errs = append(errs, s.HTTP[i].validate(p)...)
	}
	for i, t := range s.TCP {
		p := spec.Child("tcp").Index(i)
		for j, m := range t.Match {
			pm := p.Child("match").Index(j)
			if m.Port != 0 {
				errs = append(errs, validatePort(m.Port, pm.Child("port"))...)
			}
			errs = append(errs, validateHosts(m.SNIHosts, false, pm.Child("sniHosts"))...)
		}
		errs = append(errs, validateDestinations(t.Route, p.Child("route"))...)
	}
	return errs
}

func (h *HTTPRoute) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if h.Name != "" {
		for _, msg := range validation.IsDNS1123Subdomain(h.Name) {
			errs = append(errs, field.Invalid(path.Child("name"), h.Name, msg))
		}
	}
	for i, m := range h.Match {
		p := path.Child("match").Index(i)
		if m.Path != nil {
			errs = append(errs, m.Path.validate(true, p.Child("path"))...)
		}
		if m.Method != "" && (m.Method != strings.ToUpper(m.Method) || len(validation.IsHTTPHeaderName(m.Method)) > 0) {
			errs = append(errs, field.Invalid(p.Child("method"), m.Method, "must be an upper-case HTTP method token"))
		}
		for j, hm := range m.Headers {
			ph := p.Child("headers").Index(j)
			if hm.Name == "" {
				errs = append(errs, field.Required(ph.Child("name"), ""))
			}
			for _, msg := range validation.IsHTTPHeaderName(hm.Name) {
				errs = append(errs, field.Invalid(ph.Child("name"), hm.Name, msg))
			}
			errs = append(errs, hm.StringMatch.validate(false, ph)...)
		}
	}
	errs = append(errs, validateDestinations(h.Route, path.Child("route"))...)
	if m := h.Mirror; m != nil {
		p := path.Child("mirror")
		errs = append(errs, m.Destination.validate(p)...)
		if m.Percent != nil {
			errs = append(errs, percent(*m.Percent, p.Child("percent"))...)
		}
	}
	if f := h.Fault; f != nil {
		p := path.Child("fault")
		if f.Abort == nil && f.Delay == nil {
			errs = append(errs, field.Required(p, "set abort, delay or both"))
		}
		if a := f.Abort; a != nil {
			if a.Status < 200 || a.Status > 599 {
				errs = append(errs, field.Invalid(p.Child("abort", "status"), a.Status, "must be an HTTP status between 200 and 599"))
			}
			errs = append(errs, faultPercent(a.Percent, p.Child("abort", "percent"))...)
		}
		if d := f.Delay; d != nil {
			errs = append(errs, positiveDuration(&d.Delay, p.Child("delay", "delay"))...)
			errs = append(errs, faultPercent(d.Percent, p.Child("delay", "percent"))...)
		}
	}
	if r := h.Retries; r != nil {
		p := path.Child("retries")
		errs = append(errs, nonNegative(&r.Attempts, p.Child("attempts"))...)
		errs = append(errs, positiveDuration(r.PerTryTimeout, p.Child("perTryTimeout"))...)
		seen := map[RetryOn]bool{}
		for i, on := range r.RetryOn {
			errs = append(errs, validateEnum(on, true, p.Child("retryOn").Index(i))...)
			if seen[on] {
				errs = append(errs, field.Duplicate(p.Child("retryOn").Index(i), on))
			}
			seen[on] = true
		}
		if b := r.Budget; b != nil {
			errs = append(errs, percent(b.Percent, p.Child("budget", "percent"))...)
			errs = append(errs, nonNegative(&b.MinRetryConcurrency, p.Child("budget", "minRetryConcurrency"))...)
		}
		if r.PerTryTimeout != nil && h.Timeout != nil && r.PerTryTimeout.Duration > h.Timeout.Duration {
			errs = append(errs, field.Invalid(p.Child("perTryTimeout"), r.PerTryTimeout.Duration.String(), "longer than the route's timeout: no retry could ever run"))
		}
	}
	return append(errs, positiveDuration(h.Timeout, path.Child("timeout"))...)
}

func faultPercent(v float64, path *field.Path) field.ErrorList {
	if v == 0 {
		return field.ErrorList{field.Invalid(path, v, "a fault for 0% of requests does nothing: remove it or give a percentage up to 100")}
	}
	return percent(v, path)
}

func (m *StringMatch) validate(isPath bool, path *field.Path) field.ErrorList {
	n := 0
	for _, v := range []string{m.Exact, m.Prefix, m.Regex} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return field.ErrorList{field.Invalid(path, n, "set exactly one of exact, prefix and regex")}
	}
	var errs field.ErrorList
	if m.Regex != "" {
		if _, err := regexp.Compile(m.Regex); err != nil {
			errs = append(errs, field.Invalid(path.Child("regex"), m.Regex, err.Error()))
		}
	}
	if isPath {
		for name, v := range map[string]string{"exact": m.Exact, "prefix": m.Prefix} {
			if v != "" && !strings.HasPrefix(v, "/") {
				errs = append(errs, field.Invalid(path.Child(name), v, "a path starts with /"))
			}
		}
	}
	return errs
}

func (d *Destination) validate(path *field.Path) field.ErrorList {
	errs := validateHost(d.Host, false, path.Child("host"))
	if strings.HasPrefix(d.Host, "*") {
		errs = append(errs, field.Invalid(path.Child("host"), d.Host, "a destination names one host, not a wildcard"))
	}
	if d.Port != 0 {
		errs = append(errs, validatePort(d.Port, path.Child("port"))...)
	}
	if d.Subset != "" {
		for _, msg := range validation.IsDNS1123Label(d.Subset) {
			errs = append(errs, field.Invalid(path.Child("subset"), d.Subset, msg))
		}
	}
	if d.Cluster != "" {
		for _, msg := range validation.IsDNS1123Label(d.Cluster) {
			errs = append(errs, field.Invalid(path.Child("cluster"), d.Cluster, msg))
		}
	}
	return errs
}

func validateDestinations(ds []RouteDestination, path *field.Path) field.ErrorList {
	if len(ds) == 0 {
		return field.ErrorList{field.Required(path, "a route needs at least one destination")}
	}
	var errs field.ErrorList
	seen := map[Destination]bool{}
	var sum int64
	for i, d := range ds {
		p := path.Index(i)
		errs = append(errs, d.Destination.validate(p)...)
		if seen[d.Destination] {
			errs = append(errs, field.Duplicate(p, d.Host))
		}
		seen[d.Destination] = true
		if d.Weight < 0 || d.Weight > 100 {
			errs = append(errs, field.Invalid(p.Child("weight"), d.Weight, "must be between 0 and 100"))
		}
		sum += int64(d.Weight)
	}
	if len(ds) == 1 && (ds[0].Weight == 0 || ds[0].Weight == 100) {
		return errs
	}
	if sum != 100 {
		errs = append(errs, field.Invalid(path, sum, "weights must sum to 100"))
	}
	return errs
}

// Weights returns the destinations' effective weights (100 for a single
// destination without one).
func Weights(ds []RouteDestination) []int32 {
	out := make([]int32, len(ds))
	for i, d := range ds {
		out[i] = d.Weight
	}
	if len(ds) == 1 && out[0] == 0 {
		out[0] = 100
	}
	return out
}
