package locality

import (
	"github.com/meridian-mesh/meridian/locality/priority"
	"github.com/meridian-mesh/meridian/registry"
)

// The priority-load arithmetic lives in package priority, which the proxy
// links without the registry or Kubernetes; these aliases keep it part of
// locality's API.
type (
	// LevelHealth counts one priority level's hosts.
	LevelHealth = priority.LevelHealth
	// LoadOptions tune the priority load; the zero value is Envoy's
	// defaults.
	LoadOptions = priority.LoadOptions
	// Load is the share of requests, in percent, each priority receives.
	Load = priority.Load
)

// Health counts each level's hosts as Envoy would see them: serving
// endpoints (healthy and stale) are healthy; Meridian sends no degraded
// endpoints.
func (a *Assignment) Health() []LevelHealth {
	out := make([]LevelHealth, len(a.Levels))
	for i, lv := range a.Levels {
		for j := range lv.Localities {
			out[i].Healthy += lv.Localities[j].Serving()
			out[i].Total += len(lv.Localities[j].Endpoints)
		}
	}
	return out
}

// PriorityLoad is Envoy's priority load (priority.PriorityLoad) of the
// assignment's levels.
func (a *Assignment) PriorityLoad(opts LoadOptions) Load {
	return priority.PriorityLoad(a.Health(), opts)
}

// Share is the part of a client's requests one locality receives.
type Share struct {
	Priority int               `json:"priority"`
	Locality registry.Locality `json:"locality"`
	Percent  float64           `json:"percent"`
	// Failing is set when the share goes to a level in panic with no
	// serving endpoint: those requests fail.
	Failing bool `json:"failing,omitempty"`
}

// Distribution says where an Envoy-like proxy sends this client's
// requests: the priority load, then inside each priority the localities'
// weights scaled by their availability (priority.LocalityWeight, Envoy's
// locality-weighted load balancing). An assignment without endpoints has
// an empty distribution: every request fails.
func (a *Assignment) Distribution(opts LoadOptions) []Share {
	load := a.PriorityLoad(opts)
	var out []Share
	for p, lv := range a.Levels {
		pl := float64(load.Total(p))
		if pl == 0 {
			continue
		}
		factor := opts.Factor()
		if load.Panic[p] {
			factor = 0 // a level in panic uses all its hosts
		}
		eff := make([]float64, len(lv.Localities))
		var sum float64
		for i := range lv.Localities {
			le := &lv.Localities[i]
			eff[i] = priority.LocalityWeight(float64(le.Weight), le.Serving(), len(le.Endpoints), factor)
			sum += eff[i]
		}
		for i := range lv.Localities {
			if sum == 0 || eff[i] == 0 {
				continue
			}
			out = append(out, Share{Priority: p, Locality: lv.Localities[i].Locality, Percent: pl * eff[i] / sum,
				Failing: load.Panic[p] && lv.Localities[i].Serving() == 0})
		}
	}
	return out
}
