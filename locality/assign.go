package locality

import (
	"cmp"
	"time"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// Client is the side that asks: where it runs and what its cluster is.
type Client struct {
	Locality registry.Locality `json:"locality"`
	Cluster  string            `json:"cluster,omitempty"`
	// Network is the client cluster's network, read by failover orders
	// that match on "network".
	Network string `json:"network,omitempty"`
	// Labels are the client cluster's labels (jurisdiction=eu, ...), used by
	// label-matching failover orders.
	Labels map[string]string `json:"labels,omitempty"`
}

// ClientOfCluster returns a client in a cluster's region (no zone), with
// the cluster's network and labels, as "explain --from CLUSTER" asks.
func ClientOfCluster(v *registry.View, cluster string) (Client, bool) {
	seg := v.Segment(cluster)
	if seg == nil {
		return Client{}, false
	}
	return withCluster(Client{Cluster: cluster, Locality: registry.Locality{Region: seg.Cluster().Region}}, seg.Cluster()), true
}

func withCluster(c Client, cl registry.Cluster) Client {
	c.Network, c.Labels = cl.Network, cl.Labels
	return c
}

// Reason says why the engine made a decision and which policy made it.
type Reason struct {
	// Rule is the decision in words: "own zone", "failover to eu-west-1
	// (choice 1 for clients in us-east-1)", "distribute 80%".
	Rule string `json:"rule"`
	// Policy is the object that made it, "Kind namespace/name"; empty for
	// Meridian's defaults and for health reported by the registry.
	Policy string `json:"policy,omitempty"`
	// Field is the part of the policy, e.g. "spec.failover[0].to[1]".
	Field string `json:"field,omitempty"`
}

// Endpoint is an endpoint as a client sees it: the registry's value with its
// effective health (cluster state and drills folded in).
type Endpoint struct {
	*registry.Endpoint
	Health registry.Health `json:"health"`
	// StaleSince is set for stale endpoints: when their control plane was
	// last heard from.
	StaleSince time.Time `json:"staleSince,omitzero"`
	// HealthReason says why Health differs from what the endpoint's source
	// reported; nil when it does not.
	HealthReason *Reason `json:"healthReason,omitempty"`
}

// LocalityEndpoints is one locality inside a priority level.
type LocalityEndpoints struct {
	Locality registry.Locality `json:"locality"`
	// Weight is the locality's load-balancing weight, never zero.
	Weight uint32 `json:"weight"`
	// WeightReason says where the weight comes from; shared, do not
	// modify.
	WeightReason *Reason    `json:"weightReason"`
	Endpoints    []Endpoint `json:"endpoints"`
}

// Serving counts the endpoints that get new traffic.
func (l *LocalityEndpoints) Serving() int {
	n := 0
	for i := range l.Endpoints {
		if l.Endpoints[i].Health.Serving() {
			n++
		}
	}
	return n
}

// Level is one priority level.
type Level struct {
	// Reason says why these localities are at this priority.
	Reason     Reason              `json:"reason"`
	Localities []LocalityEndpoints `json:"localities"`
}

// Blocked is an endpoint a residency rule keeps away from clients
// (enforce), or would keep away (audit).
type Blocked struct {
	Endpoint registry.EndpointRef `json:"endpoint"`
	Locality registry.Locality    `json:"locality"`
	Rule     Reason               `json:"rule"`
}

// Assignment is what one client gets for one service.
type Assignment struct {
	Service registry.ServiceKey `json:"service"`
	Client  Client              `json:"client"`
	// Levels[0] is priority 0. No level is empty; every locality weight is
	// non-zero, as grpc-go requires.
	Levels []Level `json:"levels"`
	// Blocked are the endpoints enforced residency rules removed: they are
	// at no priority, for any client. Shared between assignments.
	Blocked []Blocked `json:"blocked,omitempty"`
	// Audited are endpoints served although an audit-mode rule would block
	// them. Shared between assignments.
	Audited []Blocked `json:"audited,omitempty"`
	// Failover is the FailoverPolicy in force ("Kind namespace/name"), if
	// any.
	Failover string `json:"failover,omitempty"`
	// OutlierDetection is what the client's proxy uses to eject failing
	// endpoints, with every default filled in.
	OutlierDetection       v1alpha1.OutlierDetection `json:"outlierDetection"`
	OutlierDetectionReason Reason                    `json:"outlierDetectionReason"`
}

// Serving counts the endpoints of every level that get new traffic.
func (a *Assignment) Serving() int {
	n := 0
	for _, l := range a.Levels {
		for i := range l.Localities {
			n += l.Localities[i].Serving()
		}
	}
	return n
}

// Assign computes a client's assignment for a service with no policies and
// no drills: own zone, own region, other regions, each locality weighted by
// its endpoints' weights. It is (*Engine)(nil).Assign.
func Assign(v *registry.View, svc registry.ServiceKey, c Client) Assignment {
	var e *Engine
	return e.Assign(v, svc, c)
}

// Assign computes a client's assignment for a service under the engine's
// policies and drills. A nil Engine has neither.
func (e *Engine) Assign(v *registry.View, svc registry.ServiceKey, c Client) Assignment {
	return e.arrange(e.service(v, svc), c)
}

func compareLocality(a, b registry.Locality) int {
	if c := cmp.Compare(a.Region, b.Region); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Zone, b.Zone); c != 0 {
		return c
	}
	return cmp.Compare(a.Subzone, b.Subzone)
}
