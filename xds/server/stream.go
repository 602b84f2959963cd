package server

import (
	"context"
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// This file holds the per-stream state go-control-plane's callbacks feed:
// identity, what was sent, what was ACKed or NACKed, and the rounds (one
// per batch of registry changes) waiting for ACKs.

type streamKey struct {
	delta bool
	id    int64
}

func (k streamKey) String() string {
	if k.delta {
		return fmt.Sprintf("delta-%d", k.id)
	}
	return fmt.Sprintf("sotw-%d", k.id)
}

type stream struct {
	key    streamKey
	peer   string
	opened time.Time
	// attested is the workload identity the stream proved when it opened;
	// zero when it presented no credential.
	attested spiffeid.ID
	proxy    translate.Proxy
	ok       bool // identity parsed
	lastReq  any  // the request whose watch is not created yet
	types    map[string]*typeState
}

// typeState is one stream's state for one resource type.
type typeState struct {
	group    *group // nil for types Meridian does not serve
	watch    *watch
	pending  *push // queued to the stream, not yet sent
	inflight *push // sent, waiting for ACK or NACK
	carry    []*round
	last     *push // last sent, for the debug view
	// sent is every resource the stream holds, name to the version last
	// sent (the returned resources after the last push), for the debug
	// view.
	sent map[string]string
	// sentGroup is the group version of the last push sent: while the
	// group is still at it, the stream's returned resources are current.
	sentGroup uint64
	ackAt     time.Time
	acked     string // last ACKed version
	nack      *nack  // last NACK, cleared by a later ACK
	nacks     int
	unknown   map[string]struct{}
}

type nack struct {
	version, nonce, message string
	code                    int32
	at                      time.Time
}

// push is one response: created by the cache, sent by go-control-plane.
type push struct {
	typ     string
	version string
	group   uint64 // group version the push was built from
	resp    any    // *discovery.DiscoveryResponse or *discovery.DeltaDiscoveryResponse
	sotw    *cache.PassthroughResponse
	delta   *cache.DeltaPassthroughResponse
	entries []*entry
	removed []string
	// returned is what the stream holds once the push is sent.
	returned map[string]string
	// undo takes back what a state-of-the-world push recorded in place in
	// the stream's returned versions, should it be dropped unsent.
	undo   []undoVersion
	size   int
	rounds []*round
	nonce  string
	at     time.Time
}

// round is one batch of registry changes: it converges when every push it
// caused has been ACKed (or its stream has gone).
type round struct {
	start   time.Time
	pending int
	sealed  bool // every push of the round has been created
	nacked  bool
	done    bool
}

func (st *stream) typeState(s *Server, typ string) *typeState {
	ts := st.types[typ]
	if ts != nil {
		return ts
	}
	ts = &typeState{}
	st.types[typ] = ts
	if !served(typ) {
		return ts
	}
	scope := st.proxy.Scope(typ)
	if typ == translate.SecretType && (scope.Identity == "" || s.cfg.Secrets == nil) {
		return ts // no identity, no secrets: answered empty
	}
	g := s.groups[scope]
	if g == nil {
		g = newGroup(scope)
		s.groups[scope] = g
		s.unbuilt = append(s.unbuilt, g)
		s.metrics.groups.Set(float64(len(s.groups)))
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	g.streams++
	ts.group = g
	return ts
}

func (ts *typeState) groupWatches() map[*watch]struct{} {
	if ts.group == nil {
		return nil
	}
	return ts.group.watches
}

func served(typ string) bool {
	switch typ {
	case translate.ListenerType, translate.RouteType, translate.ClusterType, translate.EndpointType, translate.SecretType:
		return true
	}
	return false
}

// resolve marks pushes of rounds as answered. Callers hold s.mu.
func (s *Server) resolve(rounds []*round, now time.Time, nacked bool) {
	for _, r := range rounds {
		r.pending--
		r.nacked = r.nacked || nacked
		s.maybeConverged(r, now)
	}
}

func (s *Server) maybeConverged(r *round, now time.Time) {
	if r.done || !r.sealed || r.pending > 0 {
		return
	}
	r.done = true
	if !r.nacked {
		s.metrics.convergence.Observe(now.Sub(r.start).Seconds())
	}
}

// Callbacks of go-control-plane's state-of-the-world server.

// OnStreamOpen implements sotw.Callbacks.
func (s *Server) OnStreamOpen(ctx context.Context, id int64, typ string) error {
	return s.open(ctx, streamKey{id: id}, typ)
}

// OnStreamClosed implements sotw.Callbacks.
func (s *Server) OnStreamClosed(id int64, _ *core.Node) { s.close(streamKey{id: id}) }

// OnStreamRequest implements sotw.Callbacks.
func (s *Server) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return s.request(streamKey{id: id}, req, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
}

// OnStreamResponse implements sotw.Callbacks.
func (s *Server) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.sent(streamKey{id: id}, resp.GetTypeUrl(), resp, resp.GetNonce())
}

// Callbacks of go-control-plane's delta server.

// OnDeltaStreamOpen implements delta.Callbacks.
func (s *Server) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	return s.open(ctx, streamKey{delta: true, id: id}, typ)
}

// OnDeltaStreamClosed implements delta.Callbacks.
func (s *Server) OnDeltaStreamClosed(id int64, _ *core.Node) { s.close(streamKey{delta: true, id: id}) }

// OnStreamDeltaRequest implements delta.Callbacks.
func (s *Server) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return s.request(streamKey{delta: true, id: id}, req, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
}

// OnStreamDeltaResponse implements delta.Callbacks.
func (s *Server) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	s.sent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp, resp.GetNonce())
}

func (s *Server) open(ctx context.Context, key streamKey, typ string) error {
	if typ != resource.AnyType {
		return status.Error(codes.Unimplemented, "xds: only aggregated discovery (ADS) is served")
	}
	st := &stream{key: key, opened: time.Now(), types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.peer = p.Addr.String()
	}
	if s.cfg.Attestor != nil && s.cfg.Secrets != nil {
		id, ok, err := s.cfg.Attestor.Attest(ctx)
		if err != nil {
			s.metrics.rejected.WithLabelValues("attestation").Inc()
			s.log.Warn("xds: rejected stream: its credential was refused", "stream", key, "peer", st.peer, "err", err)
			return status.Error(codes.Unauthenticated, "xds: the stream's credential was refused: "+err.Error())
		}
		if ok {
			st.attested = id
		}
	}
	s.mu.Lock()
	s.streams[key] = st
	s.mu.Unlock()
	return nil
}

// request runs before go-control-plane handles a request: it parses the
// proxy's identity on the first one, and matches ACKs and NACKs to the
// pushes they answer. An error closes only this stream, with its status.
func (s *Server) request(key streamKey, req any, node *core.Node, typ, nonce string, errDetail *rpcstatus.Status) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return status.Error(codes.Internal, "xds: request on an unknown stream")
	}
	if !st.ok {
		p, err := translate.ParseNode(node, s.nodeDefaults)
		if err != nil {
			s.metrics.rejected.WithLabelValues("node").Inc()
			s.log.Warn("xds: rejected stream: bad node", "stream", key, "peer", st.peer, "node", truncate(node.GetId(), 200), "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if p.Locality.IsZero() && s.view != nil {
			if seg := s.view.Segment(p.Cluster); seg != nil {
				p.Locality.Region = seg.Cluster().Region
			}
		}
		if !st.attested.IsZero() {
			if err := adoptIdentity(&p, node, st.attested); err != nil {
				s.metrics.rejected.WithLabelValues("identity").Inc()
				s.log.Warn("xds: rejected stream: the node claims another identity than the one attested", "stream", key, "peer", st.peer, "node", truncate(node.GetId(), 200), "err", err)
				return status.Error(codes.PermissionDenied, err.Error())
			}
		}
		st.proxy, st.ok = p, true
		s.metrics.connected.WithLabelValues(string(p.Mode), p.Cluster).Inc()
		s.log.Info("xds: proxy connected", "proxy", p.ID, "stream", key, "peer", st.peer, "mode", p.Mode, "cluster", p.Cluster, "namespace", p.Namespace,
			"locality", p.Locality.String(), "identity", st.attested.String())
	}
	if typ == "" {
		s.metrics.rejected.WithLabelValues("type_url").Inc()
		s.log.Warn("xds: rejected stream: request without type_url", "proxy", st.proxy.ID, "stream", key)
		return status.Error(codes.InvalidArgument, "xds: type_url is required on an aggregated stream")
	}
	if st.lastReq != nil {
		delete(s.reqStream, st.lastReq) // its watch was never created (stale nonce)
	}
	s.reqStream[req] = st
	st.lastReq = req

	ts := st.types[typ]
	if ts == nil || ts.inflight == nil || nonce == "" || nonce != ts.inflight.nonce {
		return nil
	}
	p := ts.inflight
	ts.inflight = nil
	s.metrics.pushAck.WithLabelValues(typeLabel(typ)).Observe(now.Sub(p.at).Seconds())
	if errDetail != nil {
		ts.nacks++
		ts.nack = &nack{version: p.version, nonce: nonce, message: truncate(errDetail.GetMessage(), 4096), code: errDetail.GetCode(), at: now}
		s.metrics.nacks.WithLabelValues(typeLabel(typ)).Inc()
		s.log.Warn("xds: proxy rejected a response; it keeps its last accepted version", "proxy", st.proxy.ID, "stream", key,
			"type", typeLabel(typ), "version", p.version, "nonce", nonce, "acked", ts.acked, "code", errDetail.GetCode(), "error", ts.nack.message)
		s.resolve(p.rounds, now, true)
		return nil
	}
	ts.acked, ts.ackAt, ts.nack = p.version, now, nil
	s.resolve(p.rounds, now, false)
	return nil
}

// sent runs just before go-control-plane writes a response to a stream.
func (s *Server) sent(key streamKey, typ string, resp any, nonce string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return
	}
	ts := st.types[typ]
	if ts == nil || ts.pending == nil || ts.pending.resp != resp {
		return
	}
	p := ts.pending
	ts.pending = nil
	p.nonce, p.at = nonce, time.Now()
	if ts.inflight != nil {
		// Superseded before its ACK: the proxy now answers this one, which
		// carries everything the older one did.
		p.rounds = append(p.rounds, ts.inflight.rounds...)
	}
	ts.inflight, ts.last, ts.sentGroup, ts.sent = p, p, p.group, p.returned
	s.metrics.pushes.WithLabelValues(typeLabel(typ)).Inc()
	s.metrics.pushBytes.WithLabelValues(typeLabel(typ)).Observe(float64(p.size))
}

// adoptIdentity gives a proxy the identity its stream proved. The node's
// namespace and service account, when it gives them, must be that
// identity's: a workload cannot borrow another's configuration (or its
// secrets) by claiming it. When it leaves them out, they are taken from
// the identity.
func adoptIdentity(p *translate.Proxy, node *core.Node, id spiffeid.ID) error {
	ns, sa, ok := trust.ParseWorkloadID(id)
	if !ok {
		return fmt.Errorf("xds: the stream was attested as %s, which is not a workload identity", id)
	}
	meta := node.GetMetadata().GetFields()
	if _, set := meta[translate.MetaNamespace]; set && p.Namespace != ns {
		return fmt.Errorf("xds: node.metadata[%s] %q is not the attested identity's (%s)", translate.MetaNamespace, p.Namespace, id)
	}
	if p.ServiceAccount != "" && p.ServiceAccount != sa {
		return fmt.Errorf("xds: node.metadata[%s] %q is not the attested identity's (%s)", translate.MetaServiceAccount, p.ServiceAccount, id)
	}
	p.Namespace, p.ServiceAccount, p.Identity = ns, sa, id
	return nil
}

func (s *Server) close(key streamKey) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return
	}
	delete(s.streams, key)
	if st.lastReq != nil {
		delete(s.reqStream, st.lastReq)
	}
	for _, ts := range st.types {
		var rounds []*round
		rounds = append(rounds, ts.carry...)
		if ts.pending != nil {
			rounds = append(rounds, ts.pending.rounds...)
		}
		if ts.inflight != nil {
			rounds = append(rounds, ts.inflight.rounds...)
		}
		s.resolve(rounds, now, false) // a proxy that left no longer needs the change
		if g := ts.group; g != nil {
			delete(g.watches, ts.watch)
			if g.streams--; g.streams == 0 {
				delete(s.groups, g.scope)
				s.metrics.groups.Set(float64(len(s.groups)))
			}
		}
	}
	if st.ok {
		s.metrics.connected.WithLabelValues(string(st.proxy.Mode), st.proxy.Cluster).Dec()
		s.log.Info("xds: proxy disconnected", "proxy", st.proxy.ID, "stream", key, "connected_for", now.Sub(st.opened).Round(time.Millisecond))
	}
}
