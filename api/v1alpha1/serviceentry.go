package v1alpha1

import (
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// ServiceEntry declares hosts outside the mesh. With
// outboundTrafficPolicy REGISTRY_ONLY, sidecars and egress gateways reach
// only the hosts declared here and the mesh's own services.
type ServiceEntry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceEntrySpec `json:"spec"`
	Status *Status          `json:"status,omitempty"`
}

// ServiceEntrySpec describes external hosts.
type ServiceEntrySpec struct {
	// Hosts are DNS names; a wildcard "*.example.com" needs resolution
	// none.
	Hosts []string `json:"hosts"`
	// Ports the hosts serve.
	Ports []ServiceEntryPort `json:"ports"`
	// Resolution is how endpoints are found: none (pass through to the
	// address the client asked for), static (the endpoints' IPs) or dns
	// (the endpoints' names, or the hosts themselves without endpoints).
	Resolution Resolution `json:"resolution"`
	// Endpoints, for static and dns resolution.
	Endpoints []ServiceEntryEndpoint `json:"endpoints,omitempty"`
}

// ServiceEntryPort is one port of the hosts.
type ServiceEntryPort struct {
	Number int32 `json:"number"`
	// Name is required when there are several ports.
	Name string `json:"name,omitempty"`
	// Protocol as in the registry: TCP (default), HTTP, HTTP2, GRPC, TLS.
	Protocol string `json:"protocol,omitempty"`
	// TargetPort on the endpoints, if different.
	TargetPort int32 `json:"targetPort,omitempty"`
}

// Resolution is how a ServiceEntry's endpoints are found.
type Resolution string

// Resolutions.
const (
	ResolutionNone   Resolution = "none"
	ResolutionStatic Resolution = "static"
	ResolutionDNS    Resolution = "dns"
)

// Values lists the resolutions.
func (Resolution) Values() []string { return []string{"none", "static", "dns"} }

// ServiceEntryEndpoint is one endpoint of the hosts.
type ServiceEntryEndpoint struct {
	// Address is an IP (static) or a DNS name (dns).
	Address string `json:"address"`
	// Ports maps port names to endpoint ports, when they differ.
	Ports map[string]int32 `json:"ports,omitempty"`
	// Locality "region/zone/subzone", for failover and residency.
	Locality string `json:"locality,omitempty"`
	// Labels, for subsets.
	Labels map[string]string `json:"labels,omitempty"`
	// Weight for load balancing; default 1.
	Weight int32 `json:"weight,omitempty"`
}

// Validate checks the entry on its own.
func (e *ServiceEntry) Validate() field.ErrorList {
	errs := validateMeta(&e.ObjectMeta)
	spec := field.NewPath("spec")
	s := &e.Spec
	if len(s.Hosts) == 0 {
		errs = append(errs, field.Required(spec.Child("hosts"), ""))
	}
	errs = append(errs, validateHosts(s.Hosts, false, spec.Child("hosts"))...)
	errs = append(errs, validateEnum(s.Resolution, true, spec.Child("resolution"))...)
	if len(s.Ports) == 0 {
		errs = append(errs, field.Required(spec.Child("ports"), ""))
	}
	names := map[string]bool{}
	numbers := map[int32]bool{}
	for i, p := range s.Ports {
		pp := spec.Child("ports").Index(i)
		errs = append(errs, validatePort(p.Number, pp.Child("number"))...)
		if numbers[p.Number] {
			errs = append(errs, field.Duplicate(pp.Child("number"), p.Number))
		}
		numbers[p.Number] = true
		switch {
		case p.Name == "" && len(s.Ports) > 1:
			errs = append(errs, field.Required(pp.Child("name"), "every port of a multi-port entry needs a name"))
		case p.Name != "":
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names[p.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names[p.Name] = true
		}
		if _, err := registry.ParseProtocol(p.Protocol); err != nil {
			errs = append(errs, field.Invalid(pp.Child("protocol"), p.Protocol, err.Error()))
		}
		if p.TargetPort != 0 {
			errs = append(errs, validatePort(p.TargetPort, pp.Child("targetPort"))...)
		}
	}
	for i, h := range s.Hosts {
		if len(h) > 0 && h[0] == '*' && s.Resolution != ResolutionNone {
			errs = append(errs, field.Invalid(spec.Child("hosts").Index(i), h, "a wildcard host needs resolution none: there is no one name to resolve"))
		}
	}
	switch {
	case s.Resolution == ResolutionNone && len(s.Endpoints) > 0:
		errs = append(errs, field.Forbidden(spec.Child("endpoints"), "resolution none passes traffic to the address asked for: endpoints are not used"))
	case s.Resolution == ResolutionStatic && len(s.Endpoints) == 0:
		errs = append(errs, field.Required(spec.Child("endpoints"), "resolution static needs endpoints"))
	}
	for i, ep := range s.Endpoints {
		p := spec.Child("endpoints").Index(i)
		errs = append(errs, ep.validate(s.Resolution, names, p)...)
	}
	return errs
}

func (ep *ServiceEntryEndpoint) validate(res Resolution, portNames map[string]bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := netip.ParseAddr(ep.Address); err != nil {
		if res == ResolutionStatic {
			errs = append(errs, field.Invalid(p.Child("address"), ep.Address, "resolution static needs an IP address"))
		} else {
			errs = append(errs, validateHost(ep.Address, false, p.Child("address"))...)
		}
	}
	for name, port := range ep.Ports {
		pp := p.Child("ports").Key(name)
		if !portNames[name] {
			errs = append(errs, field.NotFound(pp, name))
		}
		errs = append(errs, validatePort(port, pp)...)
	}
	if ep.Locality != "" {
		if _, err := registry.ParseLocality(ep.Locality); err != nil {
			errs = append(errs, field.Invalid(p.Child("locality"), ep.Locality, err.Error()))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(ep.Labels, p.Child("labels"))...)
	if ep.Weight < 0 {
		errs = append(errs, field.Invalid(p.Child("weight"), ep.Weight, "must not be negative"))
	}
	return errs
}
