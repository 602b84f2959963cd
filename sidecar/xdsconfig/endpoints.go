package xdsconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meridian-mesh/meridian/locality/priority"
)

// Health is an endpoint's health as EDS reports it.
type Health uint8

// Endpoint health states. UNKNOWN is healthy, TIMEOUT unhealthy, as in
// Envoy.
const (
	Healthy Health = iota
	Degraded
	Unhealthy
	Draining
)

// Endpoints is a compiled ClusterLoadAssignment.
type Endpoints struct {
	Name       string
	Localities []LocalityEndpoints
	// OverprovisioningFactor in percent (Envoy's default 140).
	OverprovisioningFactor uint32
	// Drops are the drop_overloads: each category drops its share of
	// requests independently.
	Drops []Drop
}

// References implements xdsclient.Resource.
func (*Endpoints) References(func(typeURL, name string)) {}

// Locality is an endpoint group's locality as EDS gives it.
type Locality struct {
	Region, Zone, Subzone string
}

// String renders the locality as "region/zone/subzone", dropping empty
// trailing parts, as the control plane writes localities.
func (l Locality) String() string {
	switch {
	case l.Subzone != "":
		return l.Region + "/" + l.Zone + "/" + l.Subzone
	case l.Zone != "":
		return l.Region + "/" + l.Zone
	default:
		return l.Region
	}
}

// LocalityEndpoints is one locality at one priority.
type LocalityEndpoints struct {
	Locality Locality
	Priority uint32
	// Weight is the locality's load-balancing weight; 0 when unset.
	Weight uint32
	Hosts  []HostSpec
}

// HostSpec is one endpoint.
type HostSpec struct {
	// Address is an IP, or a DNS name the proxy resolves (and
	// re-resolves): east-west gateways of other networks are often
	// published as hostnames.
	Address string
	Port    uint32
	Health  Health
	// Weight is at least 1.
	Weight uint32
}

// Drop is one drop_overloads category.
type Drop struct {
	Category   string
	PerMillion uint32
}

// maxEndpoints bounds one load assignment.
const maxEndpoints = 100_000

func endpoints(cla *endpoint.ClusterLoadAssignment) (*Endpoints, error) {
	return loadAssignment(cla, false)
}

// loadAssignment compiles a ClusterLoadAssignment; ipOnly refuses DNS
// names (STATIC clusters).
func loadAssignment(cla *endpoint.ClusterLoadAssignment, ipOnly bool) (*Endpoints, error) {
	out := &Endpoints{Name: cla.GetClusterName(), OverprovisioningFactor: priority.DefaultOverprovisioningFactor}
	if p := cla.GetPolicy(); p != nil {
		if f := p.GetOverprovisioningFactor(); f != nil {
			if f.GetValue() == 0 {
				return nil, errors.New("policy.overprovisioning_factor must be positive")
			}
			out.OverprovisioningFactor = f.GetValue()
		}
		for _, d := range p.GetDropOverloads() {
			out.Drops = append(out.Drops, Drop{Category: d.GetCategory(), PerMillion: perMillion(d.GetDropPercentage())})
		}
	}
	if len(cla.GetNamedEndpoints()) > 0 {
		return nil, errors.New("named_endpoints are not supported")
	}
	total := 0
	for i, le := range cla.GetEndpoints() {
		if le.GetLedsClusterLocalityConfig() != nil {
			return nil, fmt.Errorf("endpoints[%d]: LEDS is not supported", i)
		}
		l := LocalityEndpoints{Priority: le.GetPriority(), Weight: le.GetLoadBalancingWeight().GetValue()}
		if loc := le.GetLocality(); loc != nil {
			l.Locality = Locality{Region: loc.GetRegion(), Zone: loc.GetZone(), Subzone: loc.GetSubZone()}
		}
		total += len(le.GetLbEndpoints())
		if total > maxEndpoints {
			return nil, fmt.Errorf("more than %d endpoints", maxEndpoints)
		}
		for j, lbe := range le.GetLbEndpoints() {
			h, err := hostSpec(lbe, ipOnly)
			if err != nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: %w", i, j, err)
			}
			l.Hosts = append(l.Hosts, h)
		}
		out.Localities = append(out.Localities, l)
	}
	return out, nil
}

func hostSpec(lbe *endpoint.LbEndpoint, ipOnly bool) (HostSpec, error) {
	ep := lbe.GetEndpoint()
	if ep == nil {
		return HostSpec{}, errors.New("endpoint_name is not supported: give the endpoint inline")
	}
	sa := ep.GetAddress().GetSocketAddress()
	if sa == nil {
		return HostSpec{}, errors.New("only socket addresses are supported")
	}
	if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
		return HostSpec{}, fmt.Errorf("port %d is not a port", sa.GetPortValue())
	}
	addr := sa.GetAddress()
	if a, err := netip.ParseAddr(addr); err == nil {
		addr = a.Unmap().String()
	} else {
		if ipOnly {
			return HostSpec{}, fmt.Errorf("address %q is not an IP", addr)
		}
		if err := checkDNSName(strings.ToLower(strings.TrimSuffix(addr, "."))); err != nil {
			return HostSpec{}, fmt.Errorf("address %q is neither an IP nor a DNS name: %w", addr, err)
		}
	}
	h := HostSpec{Address: addr, Port: sa.GetPortValue(), Weight: max(1, lbe.GetLoadBalancingWeight().GetValue())}
	switch lbe.GetHealthStatus() {
	case core.HealthStatus_UNKNOWN, core.HealthStatus_HEALTHY:
		h.Health = Healthy
	case core.HealthStatus_DEGRADED:
		h.Health = Degraded
	case core.HealthStatus_DRAINING:
		h.Health = Draining
	default:
		h.Health = Unhealthy
	}
	return h, nil
}

// checkDNSName checks an RFC 1123 subdomain, as Kubernetes does for
// names: at most 253 characters, dot-separated labels of lower-case
// letters, digits and '-', each starting and ending with a letter or
// digit.
func checkDNSName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("must be no more than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.ContainsFunc(label, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' }) {
			return fmt.Errorf("label %q: want lower-case letters, digits and '-', starting and ending with a letter or digit", label)
		}
	}
	return nil
}
