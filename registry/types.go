package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Locality is where a workload runs: region, zone and subzone, the model of
// Envoy's core.Locality. Zone and subzone may be empty.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Subzone string `json:"subzone,omitempty"`
}

// String renders the locality as "region/zone/subzone", dropping empty
// trailing parts.
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

// IsZero reports whether no part of the locality is set.
func (l Locality) IsZero() bool { return l == Locality{} }

// Contains reports whether other lies inside l: same region, and the same
// zone and subzone wherever l sets them.
func (l Locality) Contains(other Locality) bool {
	return l.Region == other.Region &&
		(l.Zone == "" || l.Zone == other.Zone) &&
		(l.Subzone == "" || l.Subzone == other.Subzone)
}

// Cluster describes one cluster of the mesh.
type Cluster struct {
	Name    string            `json:"name"`
	Region  string            `json:"region"`
	Network string            `json:"network,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Gateways are the addresses ("host:port", host an IP or a DNS name) of
	// the cluster's east-west gateways, through which other networks reach
	// its endpoints.
	Gateways []string `json:"gateways,omitempty"`
}

// Equal reports whether two clusters describe the same thing.
func (c Cluster) Equal(o Cluster) bool {
	return c.Name == o.Name && c.Region == o.Region && c.Network == o.Network &&
		maps.Equal(c.Labels, o.Labels) && slices.Equal(c.Gateways, o.Gateways)
}

// Protocol is the application protocol of a service port.
type Protocol string

// Protocols Meridian understands. Unknown protocols are rejected by
// validation; an empty protocol means TCP.
const (
	ProtocolTCP   Protocol = "TCP"
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolTLS   Protocol = "TLS"
	ProtocolUDP   Protocol = "UDP"
)

var knownProtocols = []Protocol{ProtocolTCP, ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTLS, ProtocolUDP}

// ParseProtocol accepts a protocol name in any case ("http", "gRPC"); the
// empty string is TCP.
func ParseProtocol(s string) (Protocol, error) {
	if s == "" {
		return ProtocolTCP, nil
	}
	p := Protocol(strings.ToUpper(s))
	if !slices.Contains(knownProtocols, p) {
		return "", fmt.Errorf("unknown protocol %q (want one of %v)", s, knownProtocols)
	}
	return p, nil
}

// IsHTTP reports whether the protocol carries HTTP requests (HTTP/1.1,
// HTTP/2 or gRPC), so that L7 routing applies.
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// ServiceKey names a service mesh-wide: services with the same namespace and
// name in different clusters are the same service (namespace sameness).
type ServiceKey struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String renders the key as "name.namespace".
func (k ServiceKey) String() string { return k.Name + "." + k.Namespace }

func (k ServiceKey) treeKey() []byte { return []byte(k.Namespace + "/" + k.Name) }

// ServicePort is one port of a service.
type ServicePort struct {
	Name     string   `json:"name,omitempty"`
	Port     uint32   `json:"port"`
	Protocol Protocol `json:"protocol,omitempty"`
}

// Service is a service as one cluster defines it.
type Service struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Ports     []ServicePort     `json:"ports,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Headless services have no virtual IP: clients address endpoints
	// directly.
	Headless bool `json:"headless,omitempty"`
}

// Key returns the service's mesh-wide key.
func (s *Service) Key() ServiceKey { return ServiceKey{Namespace: s.Namespace, Name: s.Name} }

// Port returns the port with the given number.
func (s *Service) Port(number uint32) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == number {
			return p, true
		}
	}
	return ServicePort{}, false
}

// Equal reports whether two service definitions are the same.
func (s *Service) Equal(o *Service) bool {
	return s.Namespace == o.Namespace && s.Name == o.Name && s.Headless == o.Headless &&
		slices.Equal(s.Ports, o.Ports) && maps.Equal(s.Labels, o.Labels)
}

// Health is the state of one endpoint.
type Health uint8

// Endpoint health states. The zero value is Healthy, as Envoy treats an
// endpoint of unknown health.
const (
	// Healthy endpoints receive traffic.
	Healthy Health = iota
	// Draining endpoints finish what they have but get no new traffic
	// (Kubernetes: terminating; drills: drained).
	Draining
	// Unhealthy endpoints get no traffic.
	Unhealthy
	// Stale endpoints were healthy when their cluster's control plane was
	// last heard from. They keep receiving traffic: control-plane silence is
	// not proof that the data plane is down.
	Stale
)

var healthNames = [...]string{Healthy: "healthy", Draining: "draining", Unhealthy: "unhealthy", Stale: "stale"}

func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return fmt.Sprintf("health(%d)", uint8(h))
}

// ParseHealth parses the names String returns.
func ParseHealth(s string) (Health, error) {
	for i, n := range healthNames {
		if strings.EqualFold(s, n) {
			return Health(i), nil
		}
	}
	return 0, fmt.Errorf("unknown health %q (want healthy, draining, unhealthy or stale)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Health) UnmarshalText(b []byte) error {
	v, err := ParseHealth(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Serving reports whether an endpoint in this state should get new traffic.
func (h Health) Serving() bool { return h == Healthy || h == Stale }

// Endpoint is one port of one workload instance backing a service in one
// cluster. A workload serving several ports of a service is several
// endpoints that share an ID.
type Endpoint struct {
	Service ServiceKey `json:"service"`
	Cluster string     `json:"cluster"`
	// ID identifies the workload inside its cluster and service: a pod
	// name, a workload-API registration, or the address when nothing
	// better exists. (Service, ID, PortName) is the endpoint's key.
	ID       string `json:"id"`
	PortName string `json:"portName,omitempty"`
	// Addresses holds the workload's IPs, the primary first; a second
	// address of the other family makes a dual-stack endpoint.
	Addresses      []string          `json:"addresses"`
	Port           uint32            `json:"port"`
	Locality       Locality          `json:"locality"`
	Network        string            `json:"network,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Health         Health            `json:"health"`
	// Weight is the endpoint's load-balancing weight; zero means 1.
	Weight uint32 `json:"weight,omitempty"`
}

// Key returns the endpoint's key inside its cluster.
func (e *Endpoint) Key() EndpointKey {
	return EndpointKey{Service: e.Service, ID: e.ID, PortName: e.PortName}
}

// Address returns the primary address.
func (e *Endpoint) Address() string {
	if len(e.Addresses) == 0 {
		return ""
	}
	return e.Addresses[0]
}

// Equal reports whether two endpoints are the same in every field.
func (e *Endpoint) Equal(o *Endpoint) bool {
	return e.Service == o.Service && e.Cluster == o.Cluster && e.ID == o.ID && e.PortName == o.PortName &&
		slices.Equal(e.Addresses, o.Addresses) && e.Port == o.Port && e.Locality == o.Locality &&
		e.Network == o.Network && e.ServiceAccount == o.ServiceAccount && maps.Equal(e.Labels, o.Labels) &&
		e.Health == o.Health && e.Weight == o.Weight
}

// EndpointKey identifies an endpoint inside one cluster's segment.
type EndpointKey struct {
	Service  ServiceKey `json:"service"`
	ID       string     `json:"id"`
	PortName string     `json:"portName,omitempty"`
}

func (k EndpointKey) innerKey() []byte { return []byte(k.ID + "\x00" + k.PortName) }

// EndpointRef identifies an endpoint mesh-wide.
type EndpointRef struct {
	Cluster string `json:"cluster"`
	EndpointKey
}
