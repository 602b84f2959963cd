package daemon

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// RegistryDump is what /debug/registry returns: the global view as this
// control plane sees it.
type RegistryDump struct {
	// Version of the view; it grows with every change.
	Version  uint64        `json:"version"`
	Clusters []ClusterDump `json:"clusters"`
	Services []ServiceDump `json:"services"`
}

// ClusterDump is one cluster with its federation status and segment size.
type ClusterDump struct {
	registry.Cluster
	Status        StatusDump `json:"status"`
	Epoch         uint64     `json:"epoch"`
	Version       uint64     `json:"segmentVersion"`
	ServiceCount  int        `json:"serviceCount"`
	EndpointCount int        `json:"endpointCount"`
}

// StatusDump is a cluster's state as federation sees it: alive, suspect,
// unreachable, dead or left.
type StatusDump struct {
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
}

// ServiceDump is one service: its definition merged across clusters, the
// clusters that define it, and its endpoints in every cluster.
type ServiceDump struct {
	registry.ServiceKey
	Ports     []registry.ServicePort `json:"ports,omitempty"`
	Labels    map[string]string      `json:"labels,omitempty"`
	Headless  bool                   `json:"headless,omitempty"`
	DefinedIn []string               `json:"definedIn,omitempty"`
	Endpoints []EndpointDump         `json:"endpoints,omitempty"`
}

// EndpointDump is an endpoint with its effective health: its own health
// with its cluster's state folded in.
type EndpointDump struct {
	*registry.Endpoint
	EffectiveHealth registry.Health `json:"effectiveHealth"`
	StaleSince      *time.Time      `json:"staleSince,omitempty"`
}

// dumpFilter narrows a dump to what the query asks for.
type dumpFilter struct {
	service   *registry.ServiceKey
	namespace string
	cluster   string
	endpoints bool
}

func parseDumpFilter(q url.Values) (dumpFilter, error) {
	f := dumpFilter{endpoints: true}
	var errs field.ErrorList
	for name, vals := range q {
		p, v := field.NewPath(name), vals[0]
		switch name {
		case "service":
			name, ns, ok := strings.Cut(v, ".")
			k := registry.ServiceKey{Namespace: ns, Name: name}
			if !ok {
				errs = append(errs, field.Invalid(p, v, "want NAME.NAMESPACE"))
			} else if verrs := registry.ValidateServiceKey(k, p); len(verrs) > 0 {
				errs = append(errs, verrs...)
			}
			f.service = &k
		case "namespace":
			f.namespace = v
		case "cluster":
			f.cluster = v
		case "endpoints":
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, field.Invalid(p, v, "want true or false"))
			}
			f.endpoints = b
		default:
			errs = append(errs, field.NotSupported(p, name, []string{"service", "namespace", "cluster", "endpoints"}))
		}
	}
	if len(errs) > 0 {
		return f, errs.ToAggregate()
	}
	return f, nil
}

func (f *dumpFilter) keep(k registry.ServiceKey) bool {
	return (f.service == nil || *f.service == k) && (f.namespace == "" || f.namespace == k.Namespace)
}

// dumpRegistry renders a view, narrowed by f.
func dumpRegistry(v *registry.View, f dumpFilter) RegistryDump {
	out := RegistryDump{Version: v.Version(), Clusters: []ClusterDump{}, Services: []ServiceDump{}}
	for _, name := range v.Clusters() {
		if f.cluster != "" && name != f.cluster {
			continue
		}
		seg, st := v.Segment(name), v.Status(name)
		out.Clusters = append(out.Clusters, ClusterDump{
			Cluster: seg.Cluster(), Status: StatusDump{State: st.State.String(), Since: st.Since, LastSeen: st.LastSeen}, Epoch: seg.Epoch(), Version: seg.Version(),
			ServiceCount: seg.ServiceCount(), EndpointCount: seg.EndpointCount(),
		})
	}
	for _, k := range v.ServiceKeys() {
		if !f.keep(k) {
			continue
		}
		sd := ServiceDump{ServiceKey: k}
		if def, ok := v.Service(k); ok {
			sd.Ports, sd.Labels, sd.Headless = def.Ports, def.Labels, def.Headless
		}
		for _, c := range out.Clusters {
			if _, ok := v.Segment(c.Name).Service(k); ok {
				sd.DefinedIn = append(sd.DefinedIn, c.Name)
			}
		}
		n := 0
		for _, e := range v.Endpoints(k) {
			if f.cluster != "" && e.Cluster != f.cluster {
				continue
			}
			n++
			if !f.endpoints {
				continue
			}
			ed := EndpointDump{Endpoint: e}
			var since time.Time
			ed.EffectiveHealth, since = v.EffectiveHealth(e)
			if !since.IsZero() {
				ed.StaleSince = &since
			}
			sd.Endpoints = append(sd.Endpoints, ed)
		}
		if f.cluster != "" && n == 0 && len(sd.DefinedIn) == 0 {
			continue
		}
		out.Services = append(out.Services, sd)
	}
	return out
}

func (d *Daemon) serveRegistry(w http.ResponseWriter, r *http.Request) {
	f, err := parseDumpFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(dumpRegistry(d.Registry.View(), f)); err != nil {
		d.Log.Debug("writing /debug/registry", "err", err)
	}
}
