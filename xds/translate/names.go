package translate

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/meridian-mesh/meridian/registry"
)

// DefaultDomain is the DNS domain of mesh service hosts.
const DefaultDomain = "cluster.local"

// Names of the fixed resources (see the package doc for the scheme).
const (
	VirtualOutboundListener = "virtualOutbound"
	VirtualInboundListener  = "virtualInbound"
	PassthroughCluster      = "PassthroughCluster"
	BlackHoleCluster        = "BlackHoleCluster"
	// Ports of the sidecar's capture listeners, as Istio's.
	VirtualOutboundPort = 15001
	VirtualInboundPort  = 15006
)

// Host is a service's mesh host name: NAME.NAMESPACE.svc.DOMAIN.
func Host(k registry.ServiceKey, domain string) string {
	return k.Name + "." + k.Namespace + ".svc." + domain
}

// ClusterName names the outbound cluster (and its load assignment) of one
// service port: outbound|PORT||HOST.
func ClusterName(port uint32, host string) string { return SubsetClusterName(port, "", host) }

// SubsetClusterName names the cluster of a part of a service port's
// endpoints: outbound|PORT|SUBSET|HOST, where SUBSET is a DestinationPolicy
// subset, @CLUSTER for a route destination pinned to a cluster, or
// SUBSET@CLUSTER for both (subset names are DNS labels, so "@" is free).
func SubsetClusterName(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// ParseClusterName splits an outbound cluster name into port, subset and
// host.
func ParseClusterName(name string) (port uint32, subset, host string, err error) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[3] == "" {
		return 0, "", "", fmt.Errorf("translate: cluster name %q is not outbound|PORT|SUBSET|HOST", name)
	}
	p, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || p == 0 {
		return 0, "", "", fmt.Errorf("translate: cluster name %q: bad port %q", name, parts[1])
	}
	return uint32(p), parts[2], parts[3], nil
}

// InboundClusterName names a sidecar's cluster to its own workload's port.
func InboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10) + "||"
}

// Target is the name a proxyless gRPC client dials as xds:///TARGET, and
// the name of its listener and route configuration: HOST:PORT.
func Target(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// OutboundListenerName names a sidecar's outbound listener for a port, and
// OutboundRouteName its route configuration.
func OutboundListenerName(port uint32) string {
	return "0.0.0.0_" + strconv.FormatUint(uint64(port), 10)
}

// OutboundRouteName names a sidecar's route configuration for a port.
func OutboundRouteName(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

// GatewayName names a gateway's listener and route configuration:
// MODE_PORT (ingress_8080, egress_8080, east-west_15443).
func GatewayName(m Mode, port uint32) string {
	return string(m) + "_" + strconv.FormatUint(uint64(port), 10)
}

// EastWestSNI is the server name a client sets when it reaches a service
// port through another network's east-west gateway, as Istio's
// AUTO_PASSTHROUGH gateways expect it.
func EastWestSNI(port uint32, host string) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_._." + host
}
