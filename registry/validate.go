package registry

import (
	"fmt"
	"net/netip"
	"strings"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation reports every problem with the field path and the reason, in
// the form Kubernetes users know ("spec.port: Invalid value: 0: ..."). The
// helpers here are shared by every package that accepts registry input.

// ParseLocality parses "region[/zone[/subzone]]". Each part must be a valid
// Kubernetes label value, since localities come from node labels.
func ParseLocality(s string) (Locality, error) {
	if errs := parseLocality(s, field.NewPath("locality")); len(errs) > 0 {
		return Locality{}, errs.ToAggregate()
	}
	parts := strings.Split(s, "/")
	l := Locality{Region: parts[0]}
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.Subzone = parts[2]
	}
	return l, nil
}

func parseLocality(s string, path *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(path, "want region[/zone[/subzone]]")}
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 {
		return field.ErrorList{field.Invalid(path, s, "want region[/zone[/subzone]]: at most three parts")}
	}
	return ValidateLocality(Locality{Region: parts[0], Zone: at(parts, 1), Subzone: at(parts, 2)}, path)
}

func at(p []string, i int) string {
	if i < len(p) {
		return p[i]
	}
	return ""
}

// ValidateLocality checks that the region is set, that a subzone comes with
// a zone, and that each part is a label value.
func ValidateLocality(l Locality, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.Region == "" {
		errs = append(errs, field.Required(path.Child("region"), "a locality needs a region"))
	}
	if l.Subzone != "" && l.Zone == "" {
		errs = append(errs, field.Required(path.Child("zone"), "a subzone needs a zone"))
	}
	for name, v := range map[string]string{"region": l.Region, "zone": l.Zone, "subzone": l.Subzone} {
		if v == "" {
			continue
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(path.Child(name), v, msg))
		}
	}
	return errs
}

// ValidateCluster checks a cluster's description.
func ValidateCluster(c Cluster, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, dnsLabel(c.Name, path.Child("name"))...)
	if c.Region == "" {
		errs = append(errs, field.Required(path.Child("region"), "a cluster needs a region"))
	} else {
		for _, msg := range validation.IsValidLabelValue(c.Region) {
			errs = append(errs, field.Invalid(path.Child("region"), c.Region, msg))
		}
	}
	if c.Network != "" {
		for _, msg := range validation.IsValidLabelValue(c.Network) {
			errs = append(errs, field.Invalid(path.Child("network"), c.Network, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(c.Labels, path.Child("labels"))...)
	for i, g := range c.Gateways {
		if err := ValidateHostPort(g); err != nil {
			errs = append(errs, field.Invalid(path.Child("gateways").Index(i), g, err.Error()))
		}
	}
	return errs
}

// ValidateHostPort checks "host:port" where host is an IP or a DNS name.
func ValidateHostPort(s string) error {
	h, p, err := splitHostPort(s)
	if err != nil {
		return err
	}
	if _, err := netip.ParseAddr(h); err != nil {
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			return fmt.Errorf("host %q is neither an IP nor a DNS name: %s", h, msgs[0])
		}
	}
	if p == 0 {
		return fmt.Errorf("port must be between 1 and 65535")
	}
	return nil
}

func splitHostPort(s string) (string, uint32, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("want host:port")
	}
	host, port := strings.Trim(s[:i], "[]"), s[i+1:]
	var n uint32
	for _, c := range port {
		if c < '0' || c > '9' || n > 65535 {
			return "", 0, fmt.Errorf("port %q must be a number between 1 and 65535", port)
		}
		n = n*10 + uint32(c-'0')
	}
	if port == "" || n > 65535 {
		return "", 0, fmt.Errorf("port %q must be a number between 1 and 65535", port)
	}
	return host, n, nil
}

// ParseAddrPort parses "IP:PORT" (IPv6 in brackets) as endpoints need it:
// an IP, never a name, and a port between 1 and 65535.
func ParseAddrPort(s string) (netip.Addr, uint32, error) {
	h, p, err := splitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q is not an IP address", h)
	}
	if p == 0 {
		return netip.Addr{}, 0, fmt.Errorf("port must be between 1 and 65535")
	}
	return ip, p, nil
}

func dnsLabel(v string, path *field.Path) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(path, v, msg))
	}
	return errs
}

// ValidateServiceKey checks a namespace (a DNS-1123 label, as Kubernetes
// namespaces are) and a service name (a DNS-1035 label, as Kubernetes
// Service names are).
func ValidateServiceKey(k ServiceKey, path *field.Path) field.ErrorList {
	errs := dnsLabel(k.Namespace, path.Child("namespace"))
	if k.Name == "" {
		return append(errs, field.Required(path.Child("name"), ""))
	}
	for _, msg := range validation.IsDNS1035Label(k.Name) {
		errs = append(errs, field.Invalid(path.Child("name"), k.Name, msg))
	}
	return errs
}

func validatePort(p uint32, path *field.Path) field.ErrorList {
	if p == 0 || p > 65535 {
		return field.ErrorList{field.Invalid(path, p, "must be between 1 and 65535")}
	}
	return nil
}

// ValidateService checks a service definition.
func ValidateService(s *Service, path *field.Path) field.ErrorList {
	errs := ValidateServiceKey(s.Key(), path)
	seenName := map[string]bool{}
	seenPort := map[uint32]bool{}
	for i, p := range s.Ports {
		pp := path.Child("ports").Index(i)
		errs = append(errs, validatePort(p.Port, pp.Child("port"))...)
		if seenPort[p.Port] {
			errs = append(errs, field.Duplicate(pp.Child("port"), p.Port))
		}
		seenPort[p.Port] = true
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
		} else if len(s.Ports) > 1 {
			errs = append(errs, field.Required(pp.Child("name"), "every port of a multi-port service needs a name"))
		}
		if seenName[p.Name] && p.Name != "" {
			errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
		}
		seenName[p.Name] = true
		if _, err := ParseProtocol(string(p.Protocol)); err != nil {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, protocolNames()))
		}
	}
	return append(errs, metav1validation.ValidateLabels(s.Labels, path.Child("labels"))...)
}

func protocolNames() []string {
	out := make([]string, len(knownProtocols))
	for i, p := range knownProtocols {
		out[i] = string(p)
	}
	return out
}

// ValidateEndpoint checks an endpoint. The cluster is checked by the
// segment it is applied to, not here.
func ValidateEndpoint(e *Endpoint, path *field.Path) field.ErrorList {
	errs := ValidateServiceKey(e.Service, path.Child("service"))
	if e.ID == "" {
		errs = append(errs, field.Required(path.Child("id"), ""))
	} else if len(e.ID) > 253 {
		errs = append(errs, field.TooLong(path.Child("id"), "", 253))
	}
	if e.PortName != "" {
		for _, msg := range validation.IsValidPortName(e.PortName) {
			errs = append(errs, field.Invalid(path.Child("portName"), e.PortName, msg))
		}
	}
	if len(e.Addresses) == 0 {
		errs = append(errs, field.Required(path.Child("addresses"), "an endpoint needs an IP address"))
	}
	if len(e.Addresses) > 2 {
		errs = append(errs, field.TooMany(path.Child("addresses"), len(e.Addresses), 2))
	}
	for i, a := range e.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, field.Invalid(path.Child("addresses").Index(i), a, "must be an IPv4 or IPv6 address"))
		}
	}
	errs = append(errs, validatePort(e.Port, path.Child("port"))...)
	errs = append(errs, ValidateLocality(e.Locality, path.Child("locality"))...)
	if e.ServiceAccount != "" {
		errs = append(errs, dnsSubdomain(e.ServiceAccount, path.Child("serviceAccount"))...)
	}
	errs = append(errs, metav1validation.ValidateLabels(e.Labels, path.Child("labels"))...)
	if int(e.Health) >= len(healthNames) {
		errs = append(errs, field.NotSupported(path.Child("health"), e.Health.String(), healthNames[:]))
	}
	return errs
}

func dnsSubdomain(v string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(v) {
		errs = append(errs, field.Invalid(path, v, msg))
	}
	return errs
}

// Validate checks a change: exactly one of Service and Endpoint, valid.
func (c *Change) Validate(path *field.Path) field.ErrorList {
	switch {
	case c.Service != nil && c.Endpoint != nil:
		return field.ErrorList{field.Invalid(path, "service and endpoint", "a change holds exactly one of service and endpoint")}
	case c.Service != nil:
		if c.Op == OpDelete {
			return ValidateServiceKey(c.Service.Key(), path.Child("service"))
		}
		return ValidateService(c.Service, path.Child("service"))
	case c.Endpoint != nil:
		if c.Op == OpDelete {
			errs := ValidateServiceKey(c.Endpoint.Service, path.Child("endpoint", "service"))
			if c.Endpoint.ID == "" {
				errs = append(errs, field.Required(path.Child("endpoint", "id"), ""))
			}
			return errs
		}
		return ValidateEndpoint(c.Endpoint, path.Child("endpoint"))
	default:
		return field.ErrorList{field.Required(path, "a change holds exactly one of service and endpoint")}
	}
}
