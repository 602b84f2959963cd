package locality

import (
	"cmp"
	"slices"

	iradix "github.com/hashicorp/go-immutable-radix/v2"

	"github.com/meridian-mesh/meridian/registry"
)

// Table holds the assignments of every service for a fixed set of clients,
// computed by one engine from one view. It is immutable: Update returns a
// new table that shares every service the change did not touch, so one
// endpoint change costs one service's assignments, not the mesh's.
type Table struct {
	engine   *Engine
	view     *registry.View
	fixed    []Client // the caller's clients; nil when derived from the view
	clients  []Client
	keys     []string // engine.ClientKey of each client, parallel to clients
	keySet   map[string]bool
	services *iradix.Tree[*ServiceAssignments]
}

// ServiceAssignments are one service's assignments, one per client key.
type ServiceAssignments struct {
	Service  registry.ServiceKey
	ByClient map[string]*Assignment
}

// Build computes every service's assignments for the clients (nil: every
// client locality of the view, as ClientsOf finds them). Clients with the
// same ClientKey share one assignment.
func (e *Engine) Build(v *registry.View, clients []Client) *Table {
	t := &Table{engine: e, view: v, fixed: clients, keySet: map[string]bool{}}
	t.setClients(clients)
	txn := iradix.New[*ServiceAssignments]().Txn()
	for _, k := range v.ServiceKeys() {
		txn.Insert(treeKey(k), t.compute(v, k))
	}
	t.services = txn.Commit()
	return t
}

func (t *Table) setClients(clients []Client) {
	if clients == nil {
		clients = ClientsOf(t.view)
	}
	for _, c := range clients {
		k := t.engine.ClientKey(c)
		if !t.keySet[k] {
			t.keySet[k] = true
			t.clients = append(t.clients, c)
			t.keys = append(t.keys, k)
		}
	}
}

func treeKey(k registry.ServiceKey) []byte { return []byte(k.Namespace + "/" + k.Name) }

func (t *Table) compute(v *registry.View, k registry.ServiceKey) *ServiceAssignments {
	st := t.engine.service(v, k)
	sa := &ServiceAssignments{Service: k, ByClient: make(map[string]*Assignment, len(t.clients))}
	for i, c := range t.clients {
		a := t.engine.arrange(st, c)
		sa.ByClient[t.keys[i]] = &a
	}
	return sa
}

// Update applies a registry delta and returns the new table and the
// services whose assignments were recomputed. Only the services the delta
// names, and those with endpoints in clusters whose state changed, are
// recomputed; a Full delta, or a change of the client set derived from the
// view, rebuilds everything.
func (t *Table) Update(v *registry.View, d registry.Delta) (*Table, []registry.ServiceKey) {
	if d.Full || t.newClient(v, d) {
		return t.engine.Build(v, t.fixed), v.ServiceKeys()
	}
	touched := map[registry.ServiceKey]struct{}{}
	for k := range d.Services {
		touched[k] = struct{}{}
	}
	for c := range d.Clusters {
		for _, view := range []*registry.View{t.view, v} {
			if seg := view.Segment(c); seg != nil {
				for _, k := range seg.EndpointServices() {
					touched[k] = struct{}{}
				}
			}
		}
	}
	nt := &Table{engine: t.engine, view: v, fixed: t.fixed, clients: t.clients, keys: t.keys, keySet: t.keySet}
	txn := t.services.Txn()
	out := make([]registry.ServiceKey, 0, len(touched))
	for k := range touched {
		out = append(out, k)
		if _, ok := v.Service(k); !ok && len(v.Endpoints(k)) == 0 {
			txn.Delete(treeKey(k))
			continue
		}
		txn.Insert(treeKey(k), nt.compute(v, k))
	}
	nt.services = txn.Commit()
	slices.SortFunc(out, func(a, b registry.ServiceKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return nt, out
}

// newClient reports whether a delta brings a client the table does not
// have, when its clients are derived from the view: a cluster whose
// description changed, or an endpoint in a new zone.
func (t *Table) newClient(v *registry.View, d registry.Delta) bool {
	if t.fixed != nil {
		return false
	}
	for c := range d.Clusters {
		if seg := v.Segment(c); seg != nil {
			for _, cl := range clientsOfSegment(seg) {
				if !t.keySet[t.engine.ClientKey(cl)] {
					return true
				}
			}
		}
	}
	for ref := range d.Endpoints {
		seg := v.Segment(ref.Cluster)
		if seg == nil {
			continue
		}
		if e, ok := seg.Endpoint(ref.EndpointKey); ok {
			l := registry.Locality{Region: e.Locality.Region, Zone: e.Locality.Zone}
			if !t.keySet[t.engine.ClientKey(withCluster(Client{Locality: l, Cluster: ref.Cluster}, seg.Cluster()))] {
				return true
			}
		}
	}
	return false
}

// View is the view the table was computed from.
func (t *Table) View() *registry.View { return t.view }

// Clients are the table's clients, one per client key.
func (t *Table) Clients() []Client { return slices.Clone(t.clients) }

// Service returns one service's assignments.
func (t *Table) Service(k registry.ServiceKey) (*ServiceAssignments, bool) {
	return t.services.Get(treeKey(k))
}

// Assignment returns a client's assignment for a service; the client must
// have the ClientKey of one of the table's clients. The value is shared:
// do not modify it.
func (t *Table) Assignment(k registry.ServiceKey, c Client) (*Assignment, bool) {
	sa, ok := t.Service(k)
	if !ok {
		return nil, false
	}
	a, ok := sa.ByClient[t.engine.ClientKey(c)]
	return a, ok
}

// Len is the number of services in the table.
func (t *Table) Len() int { return t.services.Len() }

// ClientsOf returns one client per cluster and zone where the view has
// endpoints, plus one per cluster with none (in its region, no zone), each
// with its cluster's network and labels.
func ClientsOf(v *registry.View) []Client {
	var out []Client
	for _, name := range v.Clusters() {
		out = append(out, clientsOfSegment(v.Segment(name))...)
	}
	slices.SortStableFunc(out, func(a, b Client) int {
		return cmp.Or(compareLocality(a.Locality, b.Locality), cmp.Compare(a.Cluster, b.Cluster))
	})
	return out
}

func clientsOfSegment(seg *registry.Segment) []Client {
	cl := seg.Cluster()
	var out []Client
	seen := map[registry.Locality]bool{}
	seg.EachEndpoint(func(e *registry.Endpoint) bool {
		l := registry.Locality{Region: e.Locality.Region, Zone: e.Locality.Zone}
		if !seen[l] {
			seen[l] = true
			out = append(out, withCluster(Client{Locality: l, Cluster: cl.Name}, cl))
		}
		return true
	})
	if len(out) == 0 {
		out = append(out, withCluster(Client{Locality: registry.Locality{Region: cl.Region}, Cluster: cl.Name}, cl))
	}
	return out
}
