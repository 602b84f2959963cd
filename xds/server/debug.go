package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// DebugHandler serves /debug/xds: without parameters, the connected
// proxies and the groups they share; with ?proxy=ID, what each of that
// proxy's streams subscribes to, was last sent (versions, nonce, when),
// has ACKed, and its last NACK; add &resources=1 for the resources
// themselves, as JSON.
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		var out any
		if id := r.URL.Query().Get("proxy"); id != "" {
			streams := s.debugProxy(id, r.URL.Query().Get("resources") != "")
			if len(streams) == 0 {
				http.Error(w, "no connected proxy with id "+truncate(id, 200), http.StatusNotFound)
				return
			}
			out = map[string]any{"proxy": id, "streams": streams}
		} else {
			out = s.debugOverview()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out) // the client went away: nothing to do
	})
}

type debugProxy struct {
	ID        string    `json:"id"`
	Stream    string    `json:"stream"`
	Peer      string    `json:"peer,omitempty"`
	Mode      string    `json:"mode"`
	Cluster   string    `json:"cluster"`
	Namespace string    `json:"namespace"`
	Locality  string    `json:"locality"`
	Since     time.Time `json:"since"`
}

type debugGroup struct {
	Scope     string `json:"scope"`
	Version   uint64 `json:"version"`
	Resources int    `json:"resources"`
	Streams   int    `json:"streams"`
	Ready     bool   `json:"ready"`
}

func (s *Server) debugOverview() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	proxies := []debugProxy{}
	for _, st := range s.streams {
		if st.ok {
			proxies = append(proxies, st.debugIdentity())
		}
	}
	slices.SortFunc(proxies, func(a, b debugProxy) int { return strings.Compare(a.ID+a.Stream, b.ID+b.Stream) })
	groups := []debugGroup{}
	for _, g := range s.groups {
		groups = append(groups, debugGroup{Scope: g.scope.String(), Version: g.version, Resources: len(g.res), Streams: g.streams, Ready: g.ready})
	}
	slices.SortFunc(groups, func(a, b debugGroup) int { return strings.Compare(a.Scope, b.Scope) })
	return map[string]any{"proxies": proxies, "groups": groups}
}

func (st *stream) debugIdentity() debugProxy {
	p := st.proxy
	return debugProxy{ID: p.ID, Stream: st.key.String(), Peer: st.peer, Mode: string(p.Mode), Cluster: p.Cluster, Namespace: p.Namespace, Locality: p.Locality.String(), Since: st.opened}
}

type debugStream struct {
	debugProxy
	Types map[string]*debugType `json:"types"`
}

type debugType struct {
	Scope        string                     `json:"scope,omitempty"`
	GroupVersion uint64                     `json:"groupVersion"`
	Wildcard     bool                       `json:"wildcard,omitempty"`
	Subscribed   []string                   `json:"subscribed,omitempty"`
	LastPush     *debugPush                 `json:"lastPush,omitempty"`
	AwaitingAck  string                     `json:"awaitingAck,omitempty"`
	Acked        string                     `json:"acked,omitempty"`
	AckedAt      *time.Time                 `json:"ackedAt,omitempty"`
	LastNack     *debugNack                 `json:"lastNack,omitempty"`
	Nacks        int                        `json:"nacks"`
	Unknown      []string                   `json:"unknown,omitempty"`
	Resources    map[string]json.RawMessage `json:"resources,omitempty"`
}

type debugPush struct {
	Version   string            `json:"version"`
	Nonce     string            `json:"nonce"`
	At        time.Time         `json:"at"`
	Bytes     int               `json:"bytes"`
	Resources map[string]string `json:"resources"`
	Removed   []string          `json:"removed,omitempty"`
}

type debugNack struct {
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Code    int32     `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

func (s *Server) debugProxy(id string, withResources bool) []debugStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []debugStream
	for _, st := range s.streams {
		if !st.ok || st.proxy.ID != id {
			continue
		}
		ds := debugStream{debugProxy: st.debugIdentity(), Types: map[string]*debugType{}}
		for typ, ts := range st.types {
			dt := &debugType{Nacks: ts.nacks, Acked: ts.acked}
			if !ts.ackAt.IsZero() {
				at := ts.ackAt
				dt.AckedAt = &at
			}
			if g := ts.group; g != nil {
				dt.Scope, dt.GroupVersion = g.scope.String(), g.version
			}
			if p := ts.last; p != nil {
				dp := &debugPush{Version: p.version, Nonce: p.nonce, At: p.at, Bytes: p.size, Resources: map[string]string{}, Removed: p.removed}
				for _, e := range p.entries {
					dp.Resources[e.name] = e.version
				}
				dt.LastPush = dp
			}
			if ts.inflight != nil {
				dt.AwaitingAck = ts.inflight.version
			}
			if n := ts.nack; n != nil {
				dt.LastNack = &debugNack{Version: n.version, Nonce: n.nonce, Code: n.code, Message: n.message, At: n.at}
			}
			for n := range ts.unknown {
				dt.Unknown = append(dt.Unknown, n)
			}
			slices.Sort(dt.Unknown)
			// An open watch's subscription is not touched by the stream
			// until the watch is cancelled, which takes s.mu.
			if w := ts.watch; w != nil && w.sub != nil {
				dt.Wildcard = w.sub.IsWildcard()
				for n := range w.sub.SubscribedResources() {
					dt.Subscribed = append(dt.Subscribed, n)
				}
				slices.Sort(dt.Subscribed)
				if withResources && ts.group != nil {
					dt.Resources = resourcesJSON(ts.group, dt.Subscribed, dt.Wildcard)
				}
			}
			ds.Types[typeLabel(typ)] = dt
		}
		out = append(out, ds)
	}
	slices.SortFunc(out, func(a, b debugStream) int { return strings.Compare(a.Stream, b.Stream) })
	return out
}

func resourcesJSON(g *group, names []string, wildcard bool) map[string]json.RawMessage {
	if wildcard {
		names = g.names
	}
	out := map[string]json.RawMessage{}
	for _, n := range names {
		e := g.res[n]
		if e == nil {
			continue
		}
		m, err := e.any.UnmarshalNew()
		if err != nil {
			continue // our own marshaled bytes: cannot happen
		}
		if b, err := protojson.Marshal(m); err == nil {
			out[n] = b
		}
	}
	return out
}
