package translate

import (
	"net"
	"net/netip"
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// LoadAssignments returns the ClusterLoadAssignments of one service for an
// endpoint scope: one per port, and one per port and variant (subset or
// pinned cluster) that a policy names. Priorities, locality weights and
// residency are the locality engine's (locality.Engine.Assign); this only
// maps them to Envoy's model, keeps each port's and variant's endpoints,
// applies the mode's cluster filter, and reaches endpoints on other
// networks through their cluster's east-west gateways. A service without a
// definition has no load assignments: no cluster refers to them.
func LoadAssignments(in Input, s Scope, k registry.ServiceKey) Result {
	var r Result
	def, ok := in.View.Service(k)
	if !ok {
		return r
	}
	client := locality.Client{Locality: s.Locality, Cluster: s.Cluster}
	if seg := in.View.Segment(s.Cluster); seg != nil {
		client.Network, client.Labels = seg.Cluster().Network, seg.Cluster().Labels
	}
	a := in.Policies.eng().Assign(in.View, k, client)
	host := Host(k, in.domain())
	for _, p := range def.Ports {
		for _, v := range in.Policies.variantsOf(k) {
			name := SubsetClusterName(p.Port, v.name(), host)
			keep := func(e *registry.Endpoint) bool {
				if !portMatches(def, p, e.PortName) || !in.Policies.selects(k, v, e) {
					return false
				}
				switch s.Mode {
				case ModeEastWest:
					return e.Cluster == s.Cluster
				case ModeEgress:
					return e.Cluster != s.Cluster
				}
				return true
			}
			r.add(name, loadAssignment(in.View, s, a, name, client.Network, keep, &r))
		}
	}
	r.sort()
	return r
}

func loadAssignment(v *registry.View, s Scope, a locality.Assignment, name, clientNet string, keep func(*registry.Endpoint) bool, r *Result) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	// Levels left without endpoints are skipped, so priorities run from 0
	// without gaps, as grpc-go requires.
	priority := uint32(0)
	for _, level := range a.Levels {
		var locs []*endpoint.LocalityLbEndpoints
		for _, le := range level.Localities {
			eps := endpointsOf(v, s, le.Endpoints, keep, clientNet, name, r)
			if len(eps) == 0 {
				continue
			}
			locs = append(locs, &endpoint.LocalityLbEndpoints{
				Locality:            &core.Locality{Region: le.Locality.Region, Zone: le.Locality.Zone, SubZone: le.Locality.Subzone},
				LbEndpoints:         eps,
				LoadBalancingWeight: wrapperspb.UInt32(max(le.Weight, 1)),
				Priority:            priority,
			})
		}
		if len(locs) > 0 {
			cla.Endpoints = append(cla.Endpoints, locs...)
			priority++
		}
	}
	return cla
}

// endpointsOf maps the endpoints of one locality that keep accepts.
func endpointsOf(v *registry.View, s Scope, eps []locality.Endpoint, keep func(*registry.Endpoint) bool, clientNet, cluster string, r *Result) []*endpoint.LbEndpoint {
	var out []*endpoint.LbEndpoint
	// Endpoints on another network are reached through their cluster's
	// gateways: one LbEndpoint per gateway, weighted by the serving
	// endpoints behind it, in the order the clusters first appear.
	type remote struct {
		cluster string
		weight  uint32
		serving bool
	}
	var remotes []*remote
	for _, e := range eps {
		if !keep(e.Endpoint) {
			continue
		}
		net := e.Network
		if net == "" {
			if seg := v.Segment(e.Cluster); seg != nil {
				net = seg.Cluster().Network
			}
		}
		if s.Mode != ModeEastWest && clientNet != "" && net != "" && net != clientNet {
			var rm *remote
			for _, x := range remotes {
				if x.cluster == e.Cluster {
					rm = x
				}
			}
			if rm == nil {
				rm = &remote{cluster: e.Cluster}
				remotes = append(remotes, rm)
			}
			if e.Health.Serving() {
				rm.weight += weightOf(e.Endpoint)
				rm.serving = true
			}
			continue
		}
		out = append(out, lbEndpoint(e.Endpoint, e.Health, e.Port))
	}
	for _, rm := range remotes {
		seg := v.Segment(rm.cluster)
		var gws []string
		if seg != nil {
			gws = seg.Cluster().Gateways
		}
		if len(gws) == 0 {
			r.warnf("%s: endpoints of cluster %s are on another network and the cluster has no east-west gateway: left out", cluster, rm.cluster)
			continue
		}
		h := registry.Unhealthy
		if rm.serving {
			h = registry.Healthy
		}
		for _, gw := range gws {
			host, portStr, err := net.SplitHostPort(gw)
			port, perr := strconv.ParseUint(portStr, 10, 16)
			if err != nil || perr != nil || port == 0 || host == "" {
				r.warnf("%s: gateway %q of cluster %s is not HOST:PORT: left out", cluster, gw, rm.cluster)
				continue
			}
			lb := lbEndpoint(&registry.Endpoint{Addresses: []string{host}, Weight: max(rm.weight, 1)}, h, uint32(port))
			if _, err := netip.ParseAddr(host); err != nil {
				// A gateway published as a DNS name (EKS load balancers
				// are): the endpoint carries the name, which the proxy
				// resolves and re-resolves (see the package doc).
				lb.GetEndpoint().Hostname = host
			}
			out = append(out, lb)
		}
	}
	return out
}

// portMatches reports whether an endpoint backs a service port: its port
// name matches, or the service has a single port.
func portMatches(def *registry.Service, p registry.ServicePort, portName string) bool {
	return len(def.Ports) == 1 || portName == p.Name
}

func weightOf(e *registry.Endpoint) uint32 { return max(e.Weight, 1) }

// healthStatus maps Meridian's health to Envoy's: stale endpoints keep
// their traffic (control-plane silence is not proof of data-plane death).
func healthStatus(h registry.Health) core.HealthStatus {
	switch h {
	case registry.Draining:
		return core.HealthStatus_DRAINING
	case registry.Unhealthy:
		return core.HealthStatus_UNHEALTHY
	default:
		return core.HealthStatus_HEALTHY
	}
}

func lbEndpoint(e *registry.Endpoint, h registry.Health, port uint32) *endpoint.LbEndpoint {
	ep := &endpoint.Endpoint{Address: socketAddress(e.Address(), port)}
	for _, a := range e.Addresses[min(1, len(e.Addresses)):] {
		ep.AdditionalAddresses = append(ep.AdditionalAddresses, &endpoint.Endpoint_AdditionalAddress{Address: socketAddress(a, port)})
	}
	return &endpoint.LbEndpoint{
		HostIdentifier:      &endpoint.LbEndpoint_Endpoint{Endpoint: ep},
		HealthStatus:        healthStatus(h),
		LoadBalancingWeight: wrapperspb.UInt32(weightOf(e)),
	}
}

func socketAddress(ip string, port uint32) *core.Address {
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.Unmap().String()
	}
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       ip,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
