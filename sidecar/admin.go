package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// adminHandler serves the admin port: /metrics, /ready (200 once the
// first configuration is applied), /healthz, /config_dump (accepted
// resource names and the xDS stream's status) and /clusters (endpoints,
// health, ejections and the priority load).
func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", p.healthz)
	mux.HandleFunc("GET /ready", p.ready)
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		st := p.client.State()
		out := map[string]any{"status": p.client.Status()}
		for _, t := range []string{xdsclient.ListenerType, xdsclient.RouteType, xdsclient.ClusterType, xdsclient.EndpointType, xdsclient.SecretType} {
			out[t] = st.Names(t)
		}
		writeJSON(w, out)
	})
	// Profiles, as Envoy's admin offers heap and CPU profiling; the admin
	// address is loopback by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /clusters", func(w http.ResponseWriter, _ *http.Request) {
		type host struct {
			Address  string `json:"address"`
			Locality string `json:"locality"`
			Priority uint32 `json:"priority"`
			Weight   uint32 `json:"weight"`
			Health   uint8  `json:"edsHealth"`
			Ejected  bool   `json:"ejected"`
			Active   int64  `json:"activeRequests"`
		}
		type cluster struct {
			Name  string `json:"name"`
			Load  any    `json:"priorityLoad"`
			Hosts []host `json:"hosts"`
		}
		var out []cluster
		for name, c := range p.dp.Clusters() {
			cl := cluster{Name: name, Load: c.LB.Load()}
			for _, h := range c.LB.Hosts() {
				cl.Hosts = append(cl.Hosts, host{h.Addr, h.Locality().String(), h.Priority, h.Weight, uint8(h.Health()), h.Ejected(), h.Active()})
			}
			out = append(out, cl)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeJSON(w, out)
	})
	return mux
}

// metricsHandler serves /metrics alone.
func (p *Proxy) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{}))
	return mux
}

// healthHandler serves /ready and /healthz alone.
func (p *Proxy) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", p.healthz)
	mux.HandleFunc("GET /ready", p.ready)
	return mux
}

func (p *Proxy) healthz(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }

func (p *Proxy) ready(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-p.Ready():
		w.Write([]byte("ready\n"))
	default:
		http.Error(w, "waiting for the first configuration", http.StatusServiceUnavailable)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
