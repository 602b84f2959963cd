package federation

import (
	"time"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/registry"
)

// Conversions between the registry's and the policy store's values and
// their wire form. Decoding never validates: the registry and the policy
// store validate everything they are given.

func clusterToPB(c registry.Cluster) *pb.Cluster {
	return &pb.Cluster{Name: c.Name, Region: c.Region, Network: c.Network, Labels: c.Labels, Gateways: c.Gateways}
}

func clusterFromPB(c *pb.Cluster) registry.Cluster {
	return registry.Cluster{Name: c.GetName(), Region: c.GetRegion(), Network: c.GetNetwork(), Labels: c.GetLabels(), Gateways: c.GetGateways()}
}

func serviceToPB(s *registry.Service) *pb.Service {
	out := &pb.Service{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels, Headless: s.Headless}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, &pb.ServicePort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)})
	}
	return out
}

func serviceFromPB(s *pb.Service) *registry.Service {
	out := &registry.Service{Namespace: s.GetNamespace(), Name: s.GetName(), Labels: s.GetLabels(), Headless: s.GetHeadless()}
	for _, p := range s.GetPorts() {
		out.Ports = append(out.Ports, registry.ServicePort{Name: p.GetName(), Port: p.GetPort(), Protocol: registry.Protocol(p.GetProtocol())})
	}
	return out
}

func endpointToPB(e *registry.Endpoint) *pb.Endpoint {
	return &pb.Endpoint{
		Namespace: e.Service.Namespace, Service: e.Service.Name, Id: e.ID, PortName: e.PortName,
		Addresses: e.Addresses, Port: e.Port,
		Locality: &pb.Locality{Region: e.Locality.Region, Zone: e.Locality.Zone, Subzone: e.Locality.Subzone},
		Network:  e.Network, ServiceAccount: e.ServiceAccount, Labels: e.Labels,
		Health: uint32(e.Health), Weight: e.Weight,
	}
}

func endpointFromPB(e *pb.Endpoint) *registry.Endpoint {
	health := registry.Health(e.GetHealth())
	if e.GetHealth() > 255 {
		health = 255 // out of range either way: validation names it
	}
	return &registry.Endpoint{
		Service: registry.ServiceKey{Namespace: e.GetNamespace(), Name: e.GetService()},
		ID:      e.GetId(), PortName: e.GetPortName(), Addresses: e.GetAddresses(), Port: e.GetPort(),
		Locality: registry.Locality{Region: e.GetLocality().GetRegion(), Zone: e.GetLocality().GetZone(), Subzone: e.GetLocality().GetSubzone()},
		Network:  e.GetNetwork(), ServiceAccount: e.GetServiceAccount(), Labels: e.GetLabels(),
		Health: health, Weight: e.GetWeight(),
	}
}

func batchToPB(b registry.Batch) *pb.Batch {
	out := &pb.Batch{Epoch: b.Epoch, Version: b.Version, AtUnixNano: b.At.UnixNano()}
	for _, c := range b.Changes {
		pc := &pb.Change{Delete: c.Op == registry.OpDelete}
		switch {
		case c.Service != nil && c.Op == registry.OpDelete:
			pc.Item = &pb.Change_Service{Service: &pb.Service{Namespace: c.Service.Namespace, Name: c.Service.Name}}
		case c.Service != nil:
			pc.Item = &pb.Change_Service{Service: serviceToPB(c.Service)}
		case c.Op == registry.OpDelete:
			pc.Item = &pb.Change_Endpoint{Endpoint: &pb.Endpoint{Namespace: c.Endpoint.Service.Namespace, Service: c.Endpoint.Service.Name, Id: c.Endpoint.ID, PortName: c.Endpoint.PortName}}
		default:
			pc.Item = &pb.Change_Endpoint{Endpoint: endpointToPB(c.Endpoint)}
		}
		out.Changes = append(out.Changes, pc)
	}
	return out
}

func batchFromPB(b *pb.Batch) registry.Batch {
	out := registry.Batch{Epoch: b.GetEpoch(), Version: b.GetVersion(), Changes: make([]registry.Change, 0, len(b.GetChanges()))}
	if b.GetAtUnixNano() != 0 {
		out.At = time.Unix(0, b.GetAtUnixNano())
	}
	for _, c := range b.GetChanges() {
		op := registry.OpPut
		if c.GetDelete() {
			op = registry.OpDelete
		}
		ch := registry.Change{Op: op}
		if s := c.GetService(); s != nil {
			ch.Service = serviceFromPB(s)
		}
		if e := c.GetEndpoint(); e != nil {
			ch.Endpoint = endpointFromPB(e)
		}
		out.Changes = append(out.Changes, ch)
	}
	return out
}

func policyToPB(r *policy.Resource) *pb.Policy {
	return &pb.Policy{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Spec: r.Spec, Stamp: uint64(r.Stamp), Origin: r.Origin, Deleted: r.Deleted}
}

func policyFromPB(p *pb.Policy) policy.Resource {
	return policy.Resource{
		Key:  policy.Key{Kind: p.GetKind(), Namespace: p.GetNamespace(), Name: p.GetName()},
		Spec: p.GetSpec(), Stamp: policy.Timestamp(p.GetStamp()), Origin: p.GetOrigin(), Deleted: p.GetDeleted(),
	}
}

func vectorToPB(v policy.Vector) []*pb.VectorEntry {
	out := make([]*pb.VectorEntry, 0, len(v))
	for _, o := range v.Origins() {
		out = append(out, &pb.VectorEntry{Origin: o, Stamp: uint64(v[o])})
	}
	return out
}

func vectorFromPB(es []*pb.VectorEntry) policy.Vector {
	v := make(policy.Vector, len(es))
	for _, e := range es {
		if t := policy.Timestamp(e.GetStamp()); t > v[e.GetOrigin()] {
			v[e.GetOrigin()] = t
		}
	}
	return v
}
