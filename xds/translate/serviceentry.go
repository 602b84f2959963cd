package translate

import (
	"cmp"
	"net/netip"
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// externalPort is one port of one host a ServiceEntry declares.
type externalPort struct {
	host  string
	entry *v1alpha1.ServiceEntry
	port  v1alpha1.ServiceEntryPort
	proto registry.Protocol
}

func (e externalPort) cluster() string { return ClusterName(uint32(e.port.Number), e.host) }

func (p *Policies) addServiceEntry(se *v1alpha1.ServiceEntry) {
	for _, h := range se.Spec.Hosts {
		for _, port := range se.Spec.Ports {
			proto, _ := registry.ParseProtocol(port.Protocol) // validated
			p.external = append(p.external, externalPort{host: h, entry: se, port: port, proto: proto})
		}
	}
}

// isExternal reports whether a host is declared by a ServiceEntry.
func (p *Policies) isExternal(host string) bool {
	if p == nil {
		return false
	}
	// Sorted by CompilePolicies before anything asks.
	_, ok := slices.BinarySearchFunc(p.external, host, func(e externalPort, h string) int { return cmp.Compare(e.host, h) })
	return ok
}

// externalPorts returns every ServiceEntry host port, by host then port.
func (p *Policies) externalPorts() []externalPort {
	if p == nil {
		return nil
	}
	return p.external
}

// externalPort finds a declared host's port: the one given, or its only
// one.
func (p *Policies) externalPort(host string, port uint32) (externalPort, bool) {
	var found []externalPort
	for _, e := range p.externalPorts() {
		if e.host == host && (port == 0 || uint32(e.port.Number) == port) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		return externalPort{}, false
	}
	return found[0], true
}

// externalCluster is the cluster of a ServiceEntry host port: STRICT_DNS
// for resolution dns (the endpoints' names, or the host itself without
// endpoints), STATIC for static, ORIGINAL_DST for none (the address the
// client asked for; only a sidecar has one). Client TLS follows the host's
// DestinationPolicy (default: none).
func externalCluster(in Input, s Scope, e externalPort, r *Result) *cluster.Cluster {
	name := e.cluster()
	c := &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(connectTimeout)}
	dp := in.Policies.externalDests[e.host]
	if dp != nil && dp.Spec.ConnectionPool != nil && dp.Spec.ConnectionPool.ConnectTimeout != nil {
		c.ConnectTimeout = durationpb.New(dp.Spec.ConnectionPool.ConnectTimeout.Duration)
	}
	switch e.entry.Spec.Resolution {
	case v1alpha1.ResolutionNone:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
		c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
	case v1alpha1.ResolutionStatic:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
		c.LoadAssignment = externalEndpoints(name, e)
	default:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
		c.LoadAssignment = externalEndpoints(name, e)
	}
	if opts := httpOptions(e.proto, 0); opts != nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpOptionsKey: mustAny(opts)}
	}
	c.TransportSocket = clientTLS(in, s, name, e.host, nil, dp, r)
	return c
}

// externalEndpoints is the load assignment of a dns or static host port:
// one locality per distinct endpoint locality, in the order they appear.
func externalEndpoints(name string, e externalPort) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	eps := e.entry.Spec.Endpoints
	if len(eps) == 0 {
		eps = []v1alpha1.ServiceEntryEndpoint{{Address: e.host}}
	}
	byLoc := map[string]*endpoint.LocalityLbEndpoints{}
	for _, ep := range eps {
		port := uint32(e.port.Number)
		if e.port.TargetPort != 0 {
			port = uint32(e.port.TargetPort)
		}
		if p, ok := ep.Ports[e.port.Name]; ok && e.port.Name != "" {
			port = uint32(p)
		}
		loc := byLoc[ep.Locality]
		if loc == nil {
			loc = &endpoint.LocalityLbEndpoints{}
			if l, err := registry.ParseLocality(ep.Locality); err == nil && ep.Locality != "" {
				loc.Locality = &core.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.Subzone}
			}
			byLoc[ep.Locality] = loc
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		addr := ep.Address
		if a, err := netip.ParseAddr(addr); err == nil {
			addr = a.Unmap().String()
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier:      &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(addr, port)}},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(max(ep.Weight, 1))),
		})
	}
	return cla
}
