package translate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/registry"
)

// The four resource types Meridian serves, as xDS type URLs.
const (
	ListenerType = resource.ListenerType
	RouteType    = resource.RouteType
	ClusterType  = resource.ClusterType
	EndpointType = resource.EndpointType
)

// Types lists the served types in the order a proxy should apply them.
var Types = []string{ClusterType, EndpointType, ListenerType, RouteType}

// Input is everything the translation reads besides the proxy.
type Input struct {
	View *registry.View
	// Domain is the DNS domain of service hosts; DefaultDomain when empty.
	Domain string
	// Policies compiled by CompilePolicies; nil means none.
	Policies *Policies
}

func (in Input) domain() string {
	if in.Domain == "" {
		return DefaultDomain
	}
	return in.Domain
}

// Resource is one built xDS resource.
type Resource struct {
	Name    string
	Message proto.Message
}

// Result is the output of one build: resources sorted by name, and
// warnings about input that could not be translated as asked (each names
// the service or endpoint and the reason; nothing is dropped silently).
type Result struct {
	Resources []Resource
	Warnings  []string
}

func (r *Result) add(name string, m proto.Message) {
	r.Resources = append(r.Resources, Resource{Name: name, Message: m})
}

func (r *Result) warnf(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

func (r *Result) sort() {
	slices.SortFunc(r.Resources, func(a, b Resource) int { return strings.Compare(a.Name, b.Name) })
}

// Scope is what the output of one resource type depends on for a proxy:
// proxies with equal scopes get identical resources of that type, so the
// server computes them once per scope. Fields the type does not depend on
// are zero. Scope is comparable and usable as a map key.
type Scope struct {
	Type string
	// Mode is the proxy's mode for listeners, routes, clusters and
	// secrets; for endpoints it is only set for the modes that filter
	// endpoints (east-west: own cluster only; egress: other clusters only).
	Mode      Mode
	Namespace string
	Cluster   string
	Locality  registry.Locality
	// Port is a gateway's listener port.
	Port uint32
	// Inbound is a sidecar's inbound ports, comma-separated, each with
	// "/PROTOCOL" when the node gave one.
	Inbound string
	// Identity is the attested SPIFFE ID (Proxy.Identity), "" when none:
	// the SVID secret that clusters and inbound listeners name.
	Identity string
	// Labels are the proxy's labels as "k=v,k=v" (sorted), for the
	// resources that policy and Gateway selectors shape.
	Labels string
	// RegistryOnly is the outbound traffic policy REGISTRY_ONLY.
	RegistryOnly bool
}

// SecretType is the type URL of SDS secrets, served beside the four above
// to proxies whose identity was attested.
const SecretType = resource.SecretType

// Scope returns the proxy's scope for one resource type.
func (p Proxy) Scope(typeURL string) Scope {
	s := Scope{Type: typeURL}
	id := ""
	if !p.Identity.IsZero() {
		id = p.Identity.String()
	}
	switch typeURL {
	case EndpointType:
		s.Cluster, s.Locality = p.Cluster, p.Locality
		if p.Mode == ModeEastWest || p.Mode == ModeEgress {
			s.Mode = p.Mode
		}
	case ClusterType:
		switch p.Mode {
		case ModeSidecar:
			s.Mode, s.Inbound, s.Identity = p.Mode, p.inbound(), id
		case ModeIngress, ModeEgress:
			// Gateways share the sidecar-less clusters, with mTLS into
			// the mesh when they have an identity.
			s.Identity = id
		case ModeProxyless:
			s.Mode = p.Mode // only the load-balancing policies grpc-go knows
		case ModeEastWest:
			s.Mode = p.Mode // passes TLS through: never originates it
		}
	case ListenerType:
		s.Mode = p.Mode
		switch p.Mode {
		case ModeSidecar:
			s.Inbound, s.Namespace, s.Labels, s.Identity, s.RegistryOnly = p.inbound(), p.Namespace, joinLabels(p.Labels), id, p.RegistryOnly
		case ModeIngress, ModeEgress, ModeEastWest:
			s.Port, s.Namespace, s.Labels = p.ListenerPort, p.Namespace, joinLabels(p.Labels)
		}
	case RouteType:
		s.Mode = p.Mode
		switch p.Mode {
		case ModeSidecar:
			// Short host names resolve in the proxy's own namespace.
			s.Namespace, s.RegistryOnly = p.Namespace, p.RegistryOnly
		case ModeIngress, ModeEgress:
			s.Port, s.Namespace, s.Labels = p.ListenerPort, p.Namespace, joinLabels(p.Labels)
			s.RegistryOnly = p.RegistryOnly && p.Mode == ModeEgress
		}
	case SecretType:
		// Secrets exist only for an attested identity; gateways also get
		// the credentials of the Gateways that select them.
		if id != "" {
			s.Mode, s.Namespace, s.Identity = p.Mode, p.Namespace, id
			if p.Mode == ModeIngress || p.Mode == ModeEgress {
				s.Labels = joinLabels(p.Labels)
			}
		}
	}
	return s
}

func (p Proxy) inbound() string {
	s := make([]string, len(p.InboundPorts))
	for i, port := range p.InboundPorts {
		s[i] = strconv.FormatUint(uint64(port), 10)
		if proto, ok := p.InboundProtocols[port]; ok && proto != registry.ProtocolTCP {
			s[i] += "/" + string(proto)
		}
	}
	return strings.Join(s, ",")
}

// joinLabels renders labels canonically; label keys and values cannot
// hold "," or "=".
func joinLabels(l map[string]string) string {
	s := make([]string, 0, len(l))
	for k, v := range l {
		s = append(s, k+"="+v)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func splitLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// String renders a scope compactly for logs and the debug view.
func (s Scope) String() string {
	var b strings.Builder
	b.WriteString(typeShort(s.Type))
	add := func(k, v string) {
		if v != "" {
			b.WriteString(" " + k + "=" + v)
		}
	}
	add("mode", string(s.Mode))
	add("namespace", s.Namespace)
	add("cluster", s.Cluster)
	add("locality", s.Locality.String())
	if s.Port != 0 {
		add("port", strconv.FormatUint(uint64(s.Port), 10))
	}
	add("inbound", s.Inbound)
	add("identity", s.Identity)
	add("labels", s.Labels)
	if s.RegistryOnly {
		add("outbound", RegistryOnly)
	}
	return b.String()
}

func typeShort(typeURL string) string {
	switch typeURL {
	case ListenerType:
		return "LDS"
	case RouteType:
		return "RDS"
	case ClusterType:
		return "CDS"
	case EndpointType:
		return "EDS"
	case SecretType:
		return "SDS"
	}
	return typeURL
}

// inboundPort is one of a sidecar's workload ports.
type inboundPort struct {
	port  uint32
	proto registry.Protocol
}

func splitInbound(s string) []inboundPort {
	var out []inboundPort
	for _, f := range strings.Split(s, ",") {
		num, proto, _ := strings.Cut(f, "/")
		if p, err := strconv.ParseUint(num, 10, 16); err == nil && p > 0 {
			ip := inboundPort{port: uint32(p), proto: registry.ProtocolTCP}
			if proto != "" {
				ip.proto = registry.Protocol(proto)
			}
			out = append(out, ip)
		}
	}
	return out
}

// Build returns every resource of the scope's type.
func Build(in Input, s Scope) Result {
	var r Result
	switch s.Type {
	case EndpointType:
		for _, k := range in.View.ServiceKeys() {
			sub := LoadAssignments(in, s, k)
			r.Resources = append(r.Resources, sub.Resources...)
			r.Warnings = append(r.Warnings, sub.Warnings...)
		}
	case ClusterType:
		buildClusters(in, s, &r)
	case ListenerType:
		buildListeners(in, s, &r)
	case RouteType:
		buildRoutes(in, s, &r)
	default:
		r.warnf("unsupported resource type %q", s.Type)
	}
	r.sort()
	return r
}

// service is one defined mesh service with its host name.
type service struct {
	key  registry.ServiceKey
	def  *registry.Service
	host string
}

// services returns every service with a definition, in key order.
func services(in Input) []service {
	var out []service
	for _, k := range in.View.ServiceKeys() {
		if def, ok := in.View.Service(k); ok {
			out = append(out, service{key: k, def: def, host: Host(k, in.domain())})
		}
	}
	return out
}
