package xdsclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// UserAgent is the node's user_agent_name. It must not start with "gRPC":
// the control plane takes such nodes for proxyless gRPC clients.
const UserAgent = "meridian-proxy"

// NodeConfig is the proxy's identity as the control plane reads it (the
// node-metadata contract of xds/translate). Empty fields are left out, so
// the control plane applies its documented defaults.
type NodeConfig struct {
	ID             string
	Mode           translate.Mode
	Cluster        string
	Namespace      string
	ServiceAccount string
	// Locality as "region/zone/subzone"; may be empty.
	Locality string
	// InboundPorts are a sidecar's workload ports.
	InboundPorts []uint32
	// ListenerPort is a gateway's listener port.
	ListenerPort uint32
	// Version goes into user_agent_version.
	Version string
}

// Node builds the core.Node, checking what it can locally so that a typo
// in a flag fails at start, not as a stream the server closes.
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
	set(translate.MetaMode, string(n.Mode))
	set(translate.MetaCluster, n.Cluster)
	set(translate.MetaNamespace, n.Namespace)
	set(translate.MetaServiceAccount, n.ServiceAccount)
	if len(n.InboundPorts) > 0 {
		ps := make([]string, len(n.InboundPorts))
		for i, p := range n.InboundPorts {
			ps[i] = strconv.FormatUint(uint64(p), 10)
		}
		set(translate.MetaInboundPorts, strings.Join(ps, ","))
	}
	if n.ListenerPort != 0 {
		set(translate.MetaListenerPort, strconv.FormatUint(uint64(n.ListenerPort), 10))
	}
	node := &core.Node{
		Id:                   n.ID,
		Cluster:              n.Cluster,
		Metadata:             &structpb.Struct{Fields: meta},
		UserAgentName:        UserAgent,
		UserAgentVersionType: &core.Node_UserAgentVersion{UserAgentVersion: n.Version},
	}
	if n.Locality != "" {
		l, err := registry.ParseLocality(n.Locality)
		if err != nil {
			return nil, fmt.Errorf("xdsclient: node: locality: %w", err)
		}
		node.Locality = &core.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.Subzone}
	}
	// The control plane's own parser is the judge of the rest.
	if _, err := translate.ParseNode(node, translate.NodeDefaults{Cluster: "check"}); err != nil {
		return nil, fmt.Errorf("xdsclient: node: %w", err)
	}
	return node, nil
}
