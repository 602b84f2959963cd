package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meridian-mesh/meridian/xds/server/xdsadminpb"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// This file is what a proxy was sent, for people: /debug/xds on the
// admin server and the XDSAdmin gRPC service behind meridianctl
// proxy-config, one view rendered two ways.

// Redacted replaces a secret's private key wherever resources are shown.
const Redacted = "[redacted]"

// DebugHandler serves /debug/xds: without parameters, the connected
// proxies and the groups they share; with ?proxy=ID, the
// GetProxyConfigResponse of that proxy as JSON — what each of its streams
// subscribes to, holds (versions last sent), has ACKed, its last NACK; add
// &resources=1 for the resources themselves, private keys redacted.
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if id := r.URL.Query().Get("proxy"); id != "" {
			resp := s.proxyConfig(id, nil, r.URL.Query().Get("resources") != "")
			if len(resp.GetStreams()) == 0 {
				http.Error(w, "no connected proxy with id "+truncate(id, 200), http.StatusNotFound)
				return
			}
			b, _ := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp) // our own message: cannot fail
			w.Write(b)
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.debugOverview()) // the client went away: nothing to do
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
	Identity  string    `json:"identity,omitempty"`
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
			p := st.proxy
			proxies = append(proxies, debugProxy{ID: p.ID, Stream: st.key.String(), Peer: st.peer, Mode: string(p.Mode), Cluster: p.Cluster,
				Namespace: p.Namespace, Locality: p.Locality.String(), Identity: identityOf(p), Since: st.opened})
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

func identityOf(p translate.Proxy) string {
	if p.Identity.IsZero() {
		return ""
	}
	return p.Identity.String()
}

// typeNames maps what people write for a resource type to its short name.
var typeNames = map[string]string{
	"lds": "LDS", "listeners": "LDS", "listener": "LDS",
	"rds": "RDS", "routes": "RDS", "route": "RDS",
	"cds": "CDS", "clusters": "CDS", "cluster": "CDS",
	"eds": "EDS", "endpoints": "EDS", "endpoint": "EDS",
	"sds": "SDS", "secrets": "SDS", "secret": "SDS",
}

// TypeName returns the short name (LDS, RDS, CDS, EDS, SDS) of a resource
// type as people write it: the short name or listeners, routes, clusters,
// endpoints, secrets, in any case.
func TypeName(s string) (string, bool) {
	n, ok := typeNames[strings.ToLower(s)]
	return n, ok
}

// proxyConfig collects what the streams of a proxy were sent. types
// (short names) limits it; nil means all.
func (s *Server) proxyConfig(id string, types []string, withResources bool) *xdsadminpb.GetProxyConfigResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &xdsadminpb.GetProxyConfigResponse{Proxy: id}
	for _, st := range s.streams {
		if !st.ok || st.proxy.ID != id {
			continue
		}
		p := st.proxy
		ps := &xdsadminpb.ProxyStream{Id: p.ID, Stream: st.key.String(), Peer: st.peer, Mode: string(p.Mode), Cluster: p.Cluster,
			Namespace: p.Namespace, Locality: p.Locality.String(), Identity: identityOf(p), Since: timestamppb.New(st.opened),
			Types: map[string]*xdsadminpb.TypeState{}}
		for typ, ts := range st.types {
			name := typeLabel(typ)
			if types != nil && !slices.Contains(types, name) {
				continue
			}
			ps.Types[name] = ts.debug(withResources)
		}
		resp.Streams = append(resp.Streams, ps)
	}
	slices.SortFunc(resp.Streams, func(a, b *xdsadminpb.ProxyStream) int { return strings.Compare(a.GetStream(), b.GetStream()) })
	return resp
}

// debug renders one stream's type state. Callers hold s.mu.
func (ts *typeState) debug(withResources bool) *xdsadminpb.TypeState {
	dt := &xdsadminpb.TypeState{Nacks: int32(ts.nacks), Acked: ts.acked, Sent: map[string]string{}}
	if !ts.ackAt.IsZero() {
		dt.AckedAt = timestamppb.New(ts.ackAt)
	}
	g := ts.group
	if g != nil {
		dt.Scope, dt.GroupVersion = g.scope.String(), g.version
	}
	if p := ts.last; p != nil {
		dp := &xdsadminpb.Push{Version: p.version, Nonce: p.nonce, At: timestamppb.New(p.at), Bytes: int64(p.size), Resources: map[string]string{}, Removed: p.removed}
		for _, e := range p.entries {
			dp.Resources[e.name] = e.version
		}
		dt.LastPush = dp
	}
	// The stream changes its returned versions only while it has no open
	// watch (between cancelling one and creating the next, both under
	// s.mu): with one open, they hold still.
	if ts.watch != nil {
		for n, v := range ts.sent {
			if v != "" { // "" marks a name a delta stream knows is gone
				dt.Sent[n] = v
			}
		}
	} else if p := ts.last; p != nil {
		for _, e := range p.entries {
			dt.Sent[e.name] = e.version
		}
	}
	if ts.inflight != nil {
		dt.AwaitingAck = ts.inflight.version
	}
	if n := ts.nack; n != nil {
		dt.LastNack = &xdsadminpb.Nack{Version: n.version, Nonce: n.nonce, Code: n.code, Message: n.message, At: timestamppb.New(n.at)}
	}
	for n := range ts.unknown {
		dt.Unknown = append(dt.Unknown, n)
	}
	slices.Sort(dt.Unknown)
	// An open watch's subscription is not touched by the stream until the
	// watch is cancelled, which takes s.mu.
	if w := ts.watch; w != nil && w.sub != nil {
		dt.Wildcard = w.sub.IsWildcard()
		for n := range w.sub.SubscribedResources() {
			dt.Subscribed = append(dt.Subscribed, n)
		}
		slices.Sort(dt.Subscribed)
	}
	if withResources && g != nil {
		dt.Resources = map[string]*structpb.Struct{}
		for n, v := range dt.Sent {
			if e := g.res[n]; e != nil && e.version == v {
				if st := resourceStruct(e); st != nil {
					dt.Resources[n] = st
				}
			}
		}
	}
	return dt
}

// resourceStruct renders a published resource as JSON, with secrets'
// private keys redacted.
func resourceStruct(e *entry) *structpb.Struct {
	m, err := e.any.UnmarshalNew()
	if err != nil {
		return nil // our own marshaled bytes: cannot happen
	}
	b, err := protojson.Marshal(redact(m))
	if err != nil {
		return nil
	}
	var st structpb.Struct
	if err := protojson.Unmarshal(b, &st); err != nil {
		return nil
	}
	return &st
}

// redact returns a copy of a Secret without its private key; other
// messages unchanged.
func redact(m proto.Message) proto.Message {
	sec, ok := m.(*tlsv3.Secret)
	if !ok || sec.GetTlsCertificate() == nil {
		return m
	}
	c := proto.Clone(sec).(*tlsv3.Secret)
	tc := c.GetTlsCertificate()
	tc.PrivateKey = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: Redacted}}
	tc.PrivateKeyProvider, tc.Pkcs12, tc.Password = nil, nil, nil
	return c
}

type admin struct {
	xdsadminpb.UnimplementedXDSAdminServer
	s *Server
}

// GetProxyConfig implements xdsadminpb.XDSAdminServer.
func (a admin) GetProxyConfig(_ context.Context, req *xdsadminpb.GetProxyConfigRequest) (*xdsadminpb.GetProxyConfigResponse, error) {
	if req.GetProxy() == "" {
		return nil, status.Error(codes.InvalidArgument, "xds: proxy: the proxy's node id is required")
	}
	var types []string
	for _, t := range req.GetTypes() {
		n, ok := TypeName(t)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "xds: types: %q is not one of listeners, routes, clusters, endpoints, secrets", truncate(t, 100))
		}
		types = append(types, n)
	}
	resp := a.s.proxyConfig(req.GetProxy(), types, req.GetResources())
	if len(resp.GetStreams()) == 0 {
		return nil, status.Errorf(codes.NotFound, "xds: no proxy with id %q is connected to this control plane", truncate(req.GetProxy(), 200))
	}
	return resp, nil
}
