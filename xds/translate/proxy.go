package translate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/structpb"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// Mode is what kind of data plane a proxy is.
type Mode string

// Modes Meridian serves.
const (
	// ModeSidecar is a proxy beside one workload (Envoy or meridian-proxy):
	// outbound listeners for every mesh service, inbound ones for its
	// workload's ports.
	ModeSidecar Mode = "sidecar"
	// ModeIngress is a gateway taking traffic from outside the mesh: one
	// bound HTTP listener routing by Host to every HTTP mesh service.
	ModeIngress Mode = "ingress"
	// ModeEgress is the cluster's exit toward the rest of the mesh: like
	// ingress, but it only sends traffic to endpoints in other clusters.
	ModeEgress Mode = "egress"
	// ModeEastWest is the gateway through which other networks reach this
	// cluster's endpoints: TLS passthrough routed by SNI, endpoints of its
	// own cluster only.
	ModeEastWest Mode = "east-west"
	// ModeProxyless is a gRPC application using grpc-go's (or another gRPC
	// library's) xDS client: an API listener per requested target.
	ModeProxyless Mode = "proxyless"
)

var modes = []Mode{ModeSidecar, ModeIngress, ModeEgress, ModeEastWest, ModeProxyless}

// Node metadata keys the server reads (see the package doc).
const (
	MetaMode           = "mode"
	MetaCluster        = "cluster"
	MetaNamespace      = "namespace"
	MetaServiceAccount = "service_account"
	MetaInboundPorts   = "inbound_ports"
	MetaListenerPort   = "listener_port"
	MetaLabels         = "labels"
	MetaOutboundPolicy = "outbound_traffic_policy"
)

// Outbound traffic policies (metadata.outbound_traffic_policy), as Istio
// names them.
const (
	// AllowAny lets a sidecar reach hosts the mesh does not know
	// (PassthroughCluster). The default.
	AllowAny = "ALLOW_ANY"
	// RegistryOnly sends hosts that are neither mesh services nor
	// ServiceEntry hosts to BlackHoleCluster.
	RegistryOnly = "REGISTRY_ONLY"
)

// FeatureNoOverprovisioning is the client feature grpc-go announces: it
// leaves a priority level only when the whole level is down.
const FeatureNoOverprovisioning = "envoy.lb.does_not_support_overprovisioning"

// Default listener ports of the gateways.
const (
	DefaultGatewayPort  = 8080
	DefaultEastWestPort = 15443
)

// Proxy is a data plane's identity as the translation needs it.
type Proxy struct {
	// ID is the node id from the proxy's bootstrap.
	ID        string
	Mode      Mode
	Cluster   string
	Namespace string
	Locality  registry.Locality
	// ServiceAccount of the workload (sidecar, proxyless, gateways): with
	// Namespace, the identity the node claims. Only Identity, which the
	// server attests, turns it into mTLS.
	ServiceAccount string
	// Labels of the workload or gateway: what PeerAuthentication,
	// AuthorizationPolicy, RequestAuthentication and Gateway selectors
	// match.
	Labels map[string]string
	// InboundPorts are the ports a sidecar's workload serves (sorted).
	InboundPorts []uint32
	// InboundProtocols holds the protocol of the inbound ports that were
	// given one (metadata "8080/http"); the others are TCP. HTTP ports get
	// an HTTP connection manager, so that authorization applies.
	InboundProtocols map[uint32]registry.Protocol
	// ListenerPort is a gateway's listener port.
	ListenerPort uint32
	// NoOverprovisioning is set for clients that announce
	// FeatureNoOverprovisioning (grpc-go).
	NoOverprovisioning bool
	// RegistryOnly is the outbound traffic policy REGISTRY_ONLY.
	RegistryOnly bool
	// Identity is the SPIFFE ID the server attested for the proxy's stream
	// (xds/server, never the node's own claim); zero when none was. Only
	// a proxy with an identity gets mTLS in its resources (and, over SDS,
	// the secrets they name).
	Identity spiffeid.ID
}

// NodeDefaults fill what a node leaves out.
type NodeDefaults struct {
	// Cluster is the serving control plane's own cluster.
	Cluster string
	// Namespace defaults to "default".
	Namespace string
	// RegistryOnly is the mesh's outbound traffic policy for nodes that do
	// not set metadata.outbound_traffic_policy.
	RegistryOnly bool
}

// ParseNode reads a proxy's identity from the node of its first xDS
// request. Missing fields take defaults (see the package doc); present but
// malformed ones are an error naming the field, as
// field.ErrorList.ToAggregate renders it.
func ParseNode(n *core.Node, d NodeDefaults) (Proxy, error) {
	path := field.NewPath("node")
	if n == nil {
		return Proxy{}, fmt.Errorf("translate: %w", field.Required(path, "the first request of a stream must carry the node"))
	}
	var errs field.ErrorList
	p := Proxy{ID: n.GetId(), Cluster: d.Cluster, Namespace: d.Namespace, RegistryOnly: d.RegistryOnly}
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	switch {
	case p.ID == "":
		errs = append(errs, field.Required(path.Child("id"), ""))
	case len(p.ID) > 512:
		errs = append(errs, field.TooLong(path.Child("id"), "", 512))
	}
	p.NoOverprovisioning = slices.Contains(n.GetClientFeatures(), FeatureNoOverprovisioning)
	p.Mode = ModeSidecar
	if p.NoOverprovisioning || strings.HasPrefix(strings.ToLower(n.GetUserAgentName()), "grpc") {
		p.Mode = ModeProxyless
	}

	meta := n.GetMetadata().GetFields()
	mp := path.Child("metadata")
	str := func(key string) (string, bool) {
		v, ok := meta[key]
		if !ok {
			return "", false
		}
		s, isStr := v.GetKind().(*structpb.Value_StringValue)
		if !isStr {
			errs = append(errs, field.Invalid(mp.Key(key), kindName(v), "must be a string"))
			return "", false
		}
		return s.StringValue, true
	}
	if s, ok := str(MetaMode); ok {
		if !slices.Contains(modes, Mode(s)) {
			errs = append(errs, field.NotSupported(mp.Key(MetaMode), s, modeNames()))
		} else {
			p.Mode = Mode(s)
		}
	}
	if s, ok := str(MetaCluster); ok {
		errs = append(errs, dns1123Label(s, mp.Key(MetaCluster))...)
		p.Cluster = s
	}
	if s, ok := str(MetaNamespace); ok {
		errs = append(errs, dns1123Label(s, mp.Key(MetaNamespace))...)
		p.Namespace = s
	}
	if s, ok := str(MetaServiceAccount); ok {
		for _, msg := range validation.IsDNS1123Subdomain(s) {
			errs = append(errs, field.Invalid(mp.Key(MetaServiceAccount), s, msg))
		}
		p.ServiceAccount = s
	}
	if v, ok := meta[MetaListenerPort]; ok {
		port, err := portValue(v)
		if err != nil {
			errs = append(errs, field.Invalid(mp.Key(MetaListenerPort), kindName(v), err.Error()))
		}
		p.ListenerPort = port
	}
	if v, ok := meta[MetaInboundPorts]; ok {
		ports, protos, err := portList(v)
		if err != nil {
			errs = append(errs, field.Invalid(mp.Key(MetaInboundPorts), kindName(v), err.Error()))
		}
		p.InboundPorts, p.InboundProtocols = ports, protos
	}
	if v, ok := meta[MetaLabels]; ok {
		lbls, err := labelsValue(v)
		if err != nil {
			errs = append(errs, field.Invalid(mp.Key(MetaLabels), kindName(v), err.Error()))
		}
		errs = append(errs, metav1validation.ValidateLabels(lbls, mp.Key(MetaLabels))...)
		p.Labels = lbls
	}
	if s, ok := str(MetaOutboundPolicy); ok {
		switch s {
		case AllowAny:
			p.RegistryOnly = false
		case RegistryOnly:
			p.RegistryOnly = true
		default:
			errs = append(errs, field.NotSupported(mp.Key(MetaOutboundPolicy), s, []string{AllowAny, RegistryOnly}))
		}
	}
	if p.Cluster == "" {
		errs = append(errs, field.Required(mp.Key(MetaCluster), "no cluster in the node metadata and no default"))
	}
	if l := n.GetLocality(); l != nil {
		p.Locality = registry.Locality{Region: l.GetRegion(), Zone: l.GetZone(), Subzone: l.GetSubZone()}
		if !p.Locality.IsZero() {
			errs = append(errs, registry.ValidateLocality(p.Locality, path.Child("locality"))...)
		}
	}
	if p.ListenerPort == 0 {
		switch p.Mode {
		case ModeIngress, ModeEgress:
			p.ListenerPort = DefaultGatewayPort
		case ModeEastWest:
			p.ListenerPort = DefaultEastWestPort
		}
	}
	if len(errs) > 0 {
		return Proxy{}, fmt.Errorf("translate: %w", errs.ToAggregate())
	}
	return p, nil
}

func modeNames() []string {
	out := make([]string, len(modes))
	for i, m := range modes {
		out[i] = string(m)
	}
	return out
}

func dns1123Label(v string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(path, v, msg))
	}
	return errs
}

// kindName describes a metadata value for error messages without echoing
// arbitrary client bytes at length.
func kindName(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return truncateString(k.StringValue, 64)
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'g', -1, 64)
	case *structpb.Value_BoolValue:
		return "a bool"
	case *structpb.Value_ListValue:
		return "a list"
	case *structpb.Value_StructValue:
		return "an object"
	default:
		return "null"
	}
}

// portValue accepts a port as a number or a decimal string.
func portValue(v *structpb.Value) (uint32, error) {
	var n float64
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		n = k.NumberValue
	case *structpb.Value_StringValue:
		i, err := strconv.ParseUint(strings.TrimSpace(k.StringValue), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("must be a port number")
		}
		n = float64(i)
	default:
		return 0, fmt.Errorf("must be a port number")
	}
	if n != float64(uint32(n)) || n < 1 || n > 65535 {
		return 0, fmt.Errorf("must be between 1 and 65535")
	}
	return uint32(n), nil
}

// portList accepts a list of ports, or a comma-separated string of them
// (Istio's style), each optionally PORT/PROTOCOL ("8080/http"), and returns
// them sorted without duplicates, with the protocols given.
func portList(v *structpb.Value) ([]uint32, map[uint32]registry.Protocol, error) {
	var items []*structpb.Value
	switch k := v.GetKind().(type) {
	case *structpb.Value_ListValue:
		items = k.ListValue.GetValues()
	case *structpb.Value_StringValue:
		for _, s := range strings.Split(k.StringValue, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, structpb.NewStringValue(s))
			}
		}
	default:
		return nil, nil, fmt.Errorf("must be a list of ports or a comma-separated string")
	}
	if len(items) > 1024 {
		return nil, nil, fmt.Errorf("must list at most 1024 ports")
	}
	out := make([]uint32, 0, len(items))
	var protos map[uint32]registry.Protocol
	for _, it := range items {
		if s, ok := it.GetKind().(*structpb.Value_StringValue); ok {
			if num, name, found := strings.Cut(s.StringValue, "/"); found {
				proto, err := registry.ParseProtocol(strings.TrimSpace(name))
				if err != nil {
					return nil, nil, err
				}
				it = structpb.NewStringValue(num)
				p, err := portValue(it)
				if err != nil {
					return nil, nil, err
				}
				if protos == nil {
					protos = map[uint32]registry.Protocol{}
				}
				protos[p] = proto
			}
		}
		p, err := portValue(it)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), protos, nil
}

// labelsValue reads an object of string values.
func labelsValue(v *structpb.Value) (map[string]string, error) {
	st, ok := v.GetKind().(*structpb.Value_StructValue)
	if !ok {
		return nil, fmt.Errorf("must be an object of string values")
	}
	fields := st.StructValue.GetFields()
	if len(fields) > 64 {
		return nil, fmt.Errorf("must hold at most 64 labels")
	}
	out := make(map[string]string, len(fields))
	for k, f := range fields {
		s, ok := f.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, fmt.Errorf("label %q must be a string", truncateString(k, 64))
		}
		out[k] = s.StringValue
	}
	return out, nil
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
