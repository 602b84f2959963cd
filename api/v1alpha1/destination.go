package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DestinationPolicy is how clients talk to one host: load balancer,
// connection-pool limits (circuit breakers), outlier detection, TLS, and
// the version subsets routes refer to. Istio users know it as
// DestinationRule, without the locality settings, which live in
// FailoverPolicy.
type DestinationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DestinationPolicySpec `json:"spec"`
	Status *Status               `json:"status,omitempty"`
}

// DestinationPolicySpec is the client-side policy for Host.
type DestinationPolicySpec struct {
	// Host is a service ("name", "name.namespace" or its DNS name) or a
	// ServiceEntry host.
	Host string `json:"host"`
	// LoadBalancer chooses endpoints inside a locality.
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`
	// ConnectionPool limits are the circuit breakers.
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// OutlierDetection may be set here or in the service's FailoverPolicy,
	// not in both.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// TLS is how clients connect; default mesh (mTLS with SPIFFE
	// identities) for mesh services, disable for ServiceEntry hosts.
	TLS *ClientTLS `json:"tls,omitempty"`
	// Subsets are named groups of endpoints selected by labels, usually a
	// version.
	Subsets []Subset `json:"subsets,omitempty"`
}

// LoadBalancer is the endpoint-picking policy. Priorities and locality
// weights always apply (they come from the locality engine); LocalityWeighted
// turns the weights off for clients that should spread evenly across the
// localities of a priority.
type LoadBalancer struct {
	// Policy is round-robin (default), least-request or random.
	Policy LBPolicy `json:"policy,omitempty"`
	// LocalityWeighted applies the localities' weights; default true.
	LocalityWeighted *bool `json:"localityWeighted,omitempty"`
}

// LBPolicy is an endpoint-picking algorithm.
type LBPolicy string

// Load-balancing policies.
const (
	LBRoundRobin   LBPolicy = "round-robin"
	LBLeastRequest LBPolicy = "least-request"
	LBRandom       LBPolicy = "random"
)

// Values lists the policies.
func (LBPolicy) Values() []string { return []string{"round-robin", "least-request", "random"} }

// ConnectionPool holds per-client limits to one host; 0 means Envoy's
// default.
type ConnectionPool struct {
	MaxConnections           int32 `json:"maxConnections,omitempty"`
	MaxPendingRequests       int32 `json:"maxPendingRequests,omitempty"`
	MaxRequests              int32 `json:"maxRequests,omitempty"`
	MaxRetries               int32 `json:"maxRetries,omitempty"`
	MaxRequestsPerConnection int32 `json:"maxRequestsPerConnection,omitempty"`
	// ConnectTimeout bounds TCP and TLS connection set-up.
	ConnectTimeout *metav1.Duration `json:"connectTimeout,omitempty"`
}

// ClientTLS is how clients open connections to the host.
type ClientTLS struct {
	// Mode is disable, simple (server-authenticated TLS), mutual (client
	// certificate from CredentialName) or mesh (SPIFFE mTLS).
	Mode TLSMode `json:"mode"`
	// SNI sent to the server; default the host.
	SNI string `json:"sni,omitempty"`
	// CredentialName names the secret with the client certificate and
	// key (mutual) and the CA bundle (simple, mutual).
	CredentialName string `json:"credentialName,omitempty"`
	// SubjectAltNames the server certificate must carry, one of them.
	SubjectAltNames []string `json:"subjectAltNames,omitempty"`
}

// TLSMode is a client TLS mode.
type TLSMode string

// Client TLS modes.
const (
	TLSDisable TLSMode = "disable"
	TLSSimple  TLSMode = "simple"
	TLSMutual  TLSMode = "mutual"
	TLSMesh    TLSMode = "mesh"
)

// Values lists the modes.
func (TLSMode) Values() []string { return []string{"disable", "simple", "mutual", "mesh"} }

// Subset is a named group of a host's endpoints.
type Subset struct {
	Name string `json:"name"`
	// Labels the endpoints must carry.
	Labels map[string]string `json:"labels"`
}

// Validate checks the policy on its own.
func (d *DestinationPolicy) Validate() field.ErrorList {
	errs := validateMeta(&d.ObjectMeta)
	spec := field.NewPath("spec")
	s := &d.Spec
	errs = append(errs, validateHost(s.Host, false, spec.Child("host"))...)
	if lb := s.LoadBalancer; lb != nil {
		errs = append(errs, validateEnum(lb.Policy, false, spec.Child("loadBalancer", "policy"))...)
	}
	if cp := s.ConnectionPool; cp != nil {
		p := spec.Child("connectionPool")
		for name, v := range map[string]int32{"maxConnections": cp.MaxConnections, "maxPendingRequests": cp.MaxPendingRequests,
			"maxRequests": cp.MaxRequests, "maxRetries": cp.MaxRetries, "maxRequestsPerConnection": cp.MaxRequestsPerConnection} {
			errs = append(errs, nonNegative(&v, p.Child(name))...)
		}
		errs = append(errs, positiveDuration(cp.ConnectTimeout, p.Child("connectTimeout"))...)
	}
	errs = append(errs, s.OutlierDetection.validate(spec.Child("outlierDetection"))...)
	if t := s.TLS; t != nil {
		p := spec.Child("tls")
		errs = append(errs, validateEnum(t.Mode, true, p.Child("mode"))...)
		switch t.Mode {
		case TLSDisable:
			if t.SNI != "" || t.CredentialName != "" || len(t.SubjectAltNames) > 0 {
				errs = append(errs, field.Forbidden(p, "mode disable takes no sni, credentialName or subjectAltNames"))
			}
		case TLSMutual:
			if t.CredentialName == "" {
				errs = append(errs, field.Required(p.Child("credentialName"), "mode mutual needs the client certificate"))
			}
		case TLSMesh:
			if t.CredentialName != "" {
				errs = append(errs, field.Forbidden(p.Child("credentialName"), "mode mesh uses the workload's SPIFFE certificate"))
			}
		}
		if t.SNI != "" {
			errs = append(errs, validateHost(t.SNI, false, p.Child("sni"))...)
		}
		if t.CredentialName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(t.CredentialName) {
				errs = append(errs, field.Invalid(p.Child("credentialName"), t.CredentialName, msg))
			}
		}
	}
	seen := map[string]bool{}
	for i, sub := range s.Subsets {
		p := spec.Child("subsets").Index(i)
		if sub.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		for _, msg := range validation.IsDNS1123Label(sub.Name) {
			if sub.Name != "" {
				errs = append(errs, field.Invalid(p.Child("name"), sub.Name, msg))
			}
		}
		if seen[sub.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), sub.Name))
		}
		seen[sub.Name] = true
		if len(sub.Labels) == 0 {
			errs = append(errs, field.Required(p.Child("labels"), "a subset without labels is the whole host"))
		}
		errs = append(errs, metav1validation.ValidateLabels(sub.Labels, p.Child("labels"))...)
	}
	return errs
}
