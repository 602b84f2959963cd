package xdsclient

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The node-metadata contract of xds/translate (its package doc), written
// out here rather than imported: xds/translate links the control plane's
// whole policy and trust machinery, which would triple meridian-proxy's
// memory. TestNodeContract checks every value against translate's.
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

// Outbound traffic policies.
const (
	AllowAny     = "ALLOW_ANY"
	RegistryOnly = "REGISTRY_ONLY"
)

// Modes a proxy declares (translate.Mode's values meridian-proxy runs).
const (
	ModeSidecar  = "sidecar"
	ModeIngress  = "ingress"
	ModeEgress   = "egress"
	ModeEastWest = "east-west"
)

var modes = []string{ModeSidecar, ModeIngress, ModeEgress, ModeEastWest}

// UserAgent is the node's user_agent_name. It must not start with "gRPC":
// the control plane takes such nodes for proxyless gRPC clients.
const UserAgent = "meridian-proxy"

// NodeConfig is the proxy's identity as the control plane reads it (the
// node-metadata contract of xds/translate). Empty fields are left out, so
// the control plane applies its documented defaults.
type NodeConfig struct {
	ID string
	// Mode is one of the Mode constants; empty lets the control plane
	// default (sidecar).
	Mode           string
	Cluster        string
	Namespace      string
	ServiceAccount string
	// Locality as "region/zone/subzone"; may be empty.
	Locality string
	// InboundPorts are a sidecar's workload ports, each "PORT" (TCP) or
	// "PORT/PROTOCOL" ("8080/http", "9090/grpc"): HTTP ports get L7
	// inbound chains (authorization, request metrics).
	InboundPorts []string
	// ListenerPort is a gateway's listener port.
	ListenerPort uint32
	// Labels are the workload's labels, which policy selectors match.
	Labels map[string]string
	// OutboundTrafficPolicy is AllowAny or RegistryOnly; empty takes the
	// mesh's.
	OutboundTrafficPolicy string
	// Version goes into user_agent_version.
	Version string
}

// Node builds the core.Node, checking what it can locally so that a typo
// in a flag fails at start, not as a stream the server closes (the server
// checks the rest and names the field).
func (n NodeConfig) Node() (*core.Node, error) {
	if n.ID == "" {
		return nil, errors.New("xdsclient: node: id is required")
	}
	meta := map[string]*structpb.Value{}
	set := func(k, v string) {
		if v != "" {
			meta[k] = structpb.NewStringValue(v)
		}
	}
	if n.Mode != "" && !slices.Contains(modes, n.Mode) {
		return nil, fmt.Errorf("xdsclient: node: mode %q: want one of %v", n.Mode, modes)
	}
	set(MetaMode, n.Mode)
	set(MetaCluster, n.Cluster)
	set(MetaNamespace, n.Namespace)
	set(MetaServiceAccount, n.ServiceAccount)
	for _, p := range n.InboundPorts {
		port, _, _ := strings.Cut(p, "/")
		if v, err := strconv.ParseUint(port, 10, 16); err != nil || v == 0 {
			return nil, fmt.Errorf("xdsclient: node: inbound port %q: want PORT or PORT/PROTOCOL", p)
		}
	}
	set(MetaInboundPorts, strings.Join(n.InboundPorts, ","))
	if n.ListenerPort != 0 {
		set(MetaListenerPort, strconv.FormatUint(uint64(n.ListenerPort), 10))
	}
	switch n.OutboundTrafficPolicy {
	case "", AllowAny, RegistryOnly:
		set(MetaOutboundPolicy, n.OutboundTrafficPolicy)
	default:
		return nil, fmt.Errorf("xdsclient: node: outbound traffic policy %q: want %s or %s", n.OutboundTrafficPolicy, AllowAny, RegistryOnly)
	}
	if len(n.Labels) > 0 {
		fields := make(map[string]*structpb.Value, len(n.Labels))
		for k, v := range n.Labels {
			fields[k] = structpb.NewStringValue(v)
		}
		meta[MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: fields})
	}
	node := &core.Node{
		Id:                   n.ID,
		Cluster:              n.Cluster,
		Metadata:             &structpb.Struct{Fields: meta},
		UserAgentName:        UserAgent,
		UserAgentVersionType: &core.Node_UserAgentVersion{UserAgentVersion: n.Version},
	}
	if n.Locality != "" {
		parts := strings.Split(n.Locality, "/")
		if len(parts) > 3 || slices.Contains(parts, "") {
			return nil, fmt.Errorf("xdsclient: node: locality %q: want region[/zone[/subzone]]", n.Locality)
		}
		parts = append(parts, "", "")
		node.Locality = &core.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
	}
	return node, nil
}
