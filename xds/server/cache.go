package server

import (
	"slices"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// This file is Meridian's cache.ConfigWatcher: go-control-plane's servers
// call CreateWatch / CreateDeltaWatch once per request on a stream, and we
// answer each watch at most once, with exactly the resources the request
// names (or all of them for a wildcard request). go-control-plane's
// SnapshotCache cannot serve grpc-go: in ADS mode it never answers a
// request that names fewer listeners or clusters than its snapshot holds.
//
// Every decision compares the group's per-resource versions with what the
// stream was last sent (Subscription.ReturnedResources), never with the
// version the proxy ACKed: a NACKed version counts as sent, so it is not
// sent again until its content changes — no NACK storm — and the proxy
// keeps the last version it accepted.

// watch is one open request of one stream for one type.
type watch struct {
	st    *stream
	ts    *typeState
	typ   string
	first bool // the stream's first request of this type: answer even if empty
	sub   cache.Subscription
	req   *discovery.DiscoveryRequest      // state of the world
	ch    chan cache.Response              // state of the world
	dreq  *discovery.DeltaDiscoveryRequest // delta
	dch   chan cache.DeltaResponse         // delta
}

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
func (s *Server) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.takeRequest(req)
	if st == nil {
		return nil, status.Error(codes.Internal, "xds: watch for a request the server did not see")
	}
	return s.openWatch(&watch{st: st, typ: req.GetTypeUrl(), first: req.GetResponseNonce() == "", sub: sub, req: req, ch: ch}), nil
}

// CreateDeltaWatch implements cache.ConfigWatcher for delta streams.
func (s *Server) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.takeRequest(req)
	if st == nil {
		return nil, status.Error(codes.Internal, "xds: watch for a request the server did not see")
	}
	return s.openWatch(&watch{st: st, typ: req.GetTypeUrl(), first: req.GetResponseNonce() == "", sub: sub, dreq: req, dch: ch}), nil
}

// takeRequest finds the stream a request arrived on: the request callback
// (which knows the stream) runs just before the watch is created, on the
// same goroutine, with the same request value.
func (s *Server) takeRequest(req any) *stream {
	st := s.reqStream[req]
	if st != nil {
		delete(s.reqStream, req)
		st.lastReq = nil
	}
	return st
}

// openWatch answers a watch at once when it can, or keeps it until the
// group's resources change. Callers hold s.mu.
func (s *Server) openWatch(w *watch) func() {
	ts := w.st.typeState(s, w.typ)
	w.ts = ts
	if p := ts.pending; p != nil {
		// Created but never sent: the stream drops a queued response of a
		// type when a newer request of that type arrives. Its rounds wait
		// for the next push, and the versions it recorded as sent are
		// taken back.
		ts.carry = append(ts.carry, p.rounds...)
		p.revert(w.sub)
		ts.pending = nil
	}
	ts.watch = w
	cancel := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ts.group != nil {
			delete(ts.group.watches, w)
		}
		if ts.watch == w {
			ts.watch = nil
		}
	}
	g := ts.group
	if g == nil {
		if w.first {
			if w.typ == translate.SecretType {
				s.log.Info("xds: secrets asked for on a stream that proved no identity; answering empty", "proxy", w.st.proxy.ID, "stream", w.st.key)
			} else {
				s.metrics.unknown.WithLabelValues("other").Inc()
				s.log.Info("xds: request for a resource type Meridian does not serve; answering empty", "proxy", w.st.proxy.ID, "stream", w.st.key, "type", truncate(w.typ, 200))
			}
			s.send(w, s.emptyPush(w))
		}
		return cancel
	}
	if g.ready && s.respond(w, nil, nil) {
		return cancel
	}
	g.watches[w] = struct{}{}
	return cancel
}

// respond answers a watch if the stream lacks anything it subscribed to.
// hint, when set, lists the only names that changed since the watch was
// last checked. It reports whether it answered. Callers hold s.mu.
func (s *Server) respond(w *watch, hint []string, rd *round) bool {
	if hint == nil && !w.first && upToDate(w) {
		return false
	}
	var p *push
	if w.dch != nil {
		p = s.deltaPush(w, hint)
	} else {
		p = s.sotwPush(w, hint)
	}
	if p == nil {
		return false
	}
	p.rounds = append(p.rounds, w.ts.carry...)
	w.ts.carry = nil
	if rd != nil {
		rd.pending++
		p.rounds = append(p.rounds, rd)
	}
	s.send(w, p)
	return true
}

// upToDate is the common case of a request that only ACKs: the group has
// not changed since the last push sent on the stream, and the stream was
// sent every name it subscribes to (ReturnedResources only holds
// subscribed names). It saves scanning thousands of names per ACK.
func upToDate(w *watch) bool {
	g := w.ts.group
	if g == nil || w.ts.last == nil || w.ts.sentGroup != g.version {
		return false
	}
	n := len(w.sub.ReturnedResources())
	if w.sub.IsWildcard() {
		return n == len(g.res)
	}
	return n == len(w.sub.SubscribedResources())
}

// send queues a push on the watch's stream. The channels go-control-plane
// hands us hold one response per type, and a watch is answered at most
// once, so the send never blocks; if it would, the push is dropped and
// counted rather than stalling every stream behind s.mu.
func (s *Server) send(w *watch, p *push) {
	delete(w.ts.groupWatches(), w)
	w.ts.pending = p
	var ok bool
	if w.dch != nil {
		select {
		case w.dch <- p.delta:
			ok = true
		default:
		}
	} else {
		select {
		case w.ch <- p.sotw:
			ok = true
		default:
		}
	}
	if !ok {
		w.ts.pending = nil
		s.metrics.droppedWrite.Inc()
		s.log.Error("xds: response queue full; response dropped", "proxy", w.st.proxy.ID, "stream", w.st.key, "type", typeLabel(w.typ))
		s.resolve(p.rounds, time.Now(), false)
	}
}

func (s *Server) emptyPush(w *watch) *push {
	p := &push{typ: w.typ}
	if w.dch != nil {
		p.resp = &discovery.DeltaDiscoveryResponse{TypeUrl: w.typ}
		p.delta = &cache.DeltaPassthroughResponse{DeltaRequest: w.dreq, NextVersionMap: map[string]string{}, DeltaDiscoveryResponse: p.resp.(*discovery.DeltaDiscoveryResponse)}
	} else {
		p.resp = &discovery.DiscoveryResponse{TypeUrl: w.typ}
		p.sotw = &cache.PassthroughResponse{Request: w.req, ReturnedResources: map[string]string{}, DiscoveryResponse: p.resp.(*discovery.DiscoveryResponse)}
	}
	return p
}

// wanted reports whether a watch subscribes to a name.
func wanted(sub cache.Subscription, name string) bool {
	if sub.IsWildcard() {
		return true
	}
	_, ok := sub.SubscribedResources()[name]
	return ok
}

// sotwPush builds a state-of-the-world response, or nil when the stream
// already has everything. Listeners and clusters are answered with the
// full subscribed set (a missing one means deleted); load assignments and
// routes only with what changed, as the protocol allows.
func (s *Server) sotwPush(w *watch, hint []string) *push {
	g := w.ts.group
	sub := w.sub
	returned := sub.ReturnedResources()
	var list []*entry
	var next map[string]string
	var undo []undoVersion
	if cache.ResourceRequiresFullStateInSotw(w.typ) {
		list = s.subscribedEntries(w)
		changed := w.first || len(list) != len(returned)
		for i := 0; !changed && i < len(list); i++ {
			changed = returned[list[i].name] != list[i].version
		}
		if !changed {
			return nil
		}
		next = make(map[string]string, len(list))
		for _, e := range list {
			next[e.name] = e.version
		}
	} else {
		var gone []string
		list, gone, _ = s.changes(w, hint)
		if len(list) == 0 && len(gone) == 0 && !w.first {
			return nil
		}
		// Updated in place, as for delta streams, rather than copied
		// (copying a thousand versions per push was a sixth of the
		// server's CPU after one change reached a thousand sidecars). The
		// stream may drop this response unsent (see sotwStream): the undo
		// log puts the map back then (openWatch).
		undo = make([]undoVersion, 0, len(list)+len(gone))
		for _, e := range list {
			v, had := returned[e.name]
			undo = append(undo, undoVersion{e.name, v, had})
		}
		for _, n := range gone {
			undo = append(undo, undoVersion{n, returned[n], true})
		}
		next = withVersions(returned, list, gone)
	}
	resp := &discovery.DiscoveryResponse{VersionInfo: g.versionInfo(), TypeUrl: w.typ, Resources: make([]*anypb.Any, len(list))}
	p := &push{typ: w.typ, version: resp.VersionInfo, group: g.version, resp: resp, entries: list}
	for i, e := range list {
		resp.Resources[i] = e.any
		p.size += len(e.any.Value)
	}
	p.sotw = &cache.PassthroughResponse{Request: w.req, DiscoveryResponse: resp, ReturnedResources: next}
	p.returned, p.undo = next, undo
	return p
}

// subscribedEntries is the full set a watch subscribes to, sorted by name.
func (s *Server) subscribedEntries(w *watch) []*entry {
	g := w.ts.group
	if w.sub.IsWildcard() {
		list := make([]*entry, len(g.names))
		for i, n := range g.names {
			list[i] = g.res[n]
		}
		return list
	}
	list := make([]*entry, 0, len(w.sub.SubscribedResources()))
	for n := range w.sub.SubscribedResources() {
		if e := g.res[n]; e != nil {
			list = append(list, e)
		}
	}
	s.noteUnknown(w)
	slices.SortFunc(list, byName)
	return list
}

// changes compares what a watch subscribes to with what its stream was
// sent: the entries whose versions differ (sorted by name), the names sent
// that no longer exist, and subscribed names that do not exist, newly
// noted. hint, when set, limits the comparison to those names.
func (s *Server) changes(w *watch, hint []string) (send []*entry, gone, unknown []string) {
	g, sub := w.ts.group, w.sub
	returned := sub.ReturnedResources()
	check := func(name string) {
		e := g.res[name]
		v, had := returned[name]
		switch {
		case e != nil && v != e.version:
			send = append(send, e)
		case e == nil && had && v != "": // "" marks a name delta streams know is gone
			gone = append(gone, name)
		}
	}
	switch {
	case hint != nil:
		for _, n := range hint {
			if wanted(sub, n) {
				check(n)
			}
		}
	case sub.IsWildcard():
		for _, n := range g.names {
			check(n)
		}
		for n, v := range returned {
			if g.res[n] == nil && v != "" {
				gone = append(gone, n)
			}
		}
	default:
		for n := range sub.SubscribedResources() {
			check(n)
		}
		unknown = s.noteUnknown(w)
	}
	slices.SortFunc(send, byName)
	slices.Sort(gone)
	return send, gone, unknown
}

// undoVersion is a resource's version before a push recorded a new one.
type undoVersion struct {
	name, version string
	had           bool
}

// revert takes back, in a subscription's returned versions, what a
// response that was never sent recorded; names no longer subscribed stay
// out. Callers hold s.mu, and the stream does not touch the subscription
// while its watch is open.
func (p *push) revert(sub cache.Subscription) {
	m := sub.ReturnedResources()
	for _, u := range p.undo {
		if u.had && wanted(sub, u.name) {
			m[u.name] = u.version
		} else {
			delete(m, u.name)
		}
	}
}

// withVersions records in m (made when nil) the versions of the entries
// sent, and forgets the names gone, so that they are sent again should
// they come back.
func withVersions(m map[string]string, sent []*entry, gone []string) map[string]string {
	if m == nil {
		m = make(map[string]string, len(sent))
	}
	for _, e := range sent {
		m[e.name] = e.version
	}
	for _, n := range gone {
		delete(m, n)
	}
	return m
}

// deltaPush builds an incremental response with the resources whose
// versions differ from what the stream has, and the removed ones; nil when
// there is nothing to say.
func (s *Server) deltaPush(w *watch, hint []string) *push {
	g := w.ts.group
	sub := w.sub
	returned := sub.ReturnedResources()
	list, removed, unknown := s.changes(w, hint)
	// Names the proxy asks for that do not exist are reported once as
	// removed, which is how delta xDS says "no such resource".
	removed = append(removed, unknown...)
	if len(list) == 0 && len(removed) == 0 && !w.first {
		return nil
	}
	// Updated in place, not copied: copying thousands of versions per push
	// dominated the cost of a one-endpoint change. This relies on how
	// go-control-plane's delta server (v0.14) uses the map: it never drops
	// a queued delta response (so the stream does get what the map now
	// says), it stores the same map back as the stream's returned
	// resources, and it only touches the subscription after cancelling the
	// watch, which takes s.mu. (State-of-the-world streams may drop a
	// queued response, so sotwPush copies.)
	next := withVersions(returned, list, removed)
	resp := &discovery.DeltaDiscoveryResponse{SystemVersionInfo: g.versionInfo(), TypeUrl: w.typ, Resources: make([]*discovery.Resource, len(list)), RemovedResources: removed}
	p := &push{typ: w.typ, version: resp.SystemVersionInfo, group: g.version, resp: resp, entries: list, removed: removed}
	for i, e := range list {
		resp.Resources[i] = e.delta
		p.size += len(e.any.Value)
	}
	p.delta = &cache.DeltaPassthroughResponse{DeltaRequest: w.dreq, NextVersionMap: next, DeltaDiscoveryResponse: resp}
	p.returned = next
	return p
}

// noteUnknown logs and counts, once per stream and name, the names a
// watch subscribes to that its group does not have, and returns the newly
// noted ones.
func (s *Server) noteUnknown(w *watch) []string {
	g := w.ts.group
	var fresh []string
	for n := range w.sub.SubscribedResources() {
		if g.res[n] != nil {
			delete(w.ts.unknown, n)
			continue
		}
		if _, seen := w.ts.unknown[n]; seen {
			continue
		}
		if len(w.ts.unknown) >= 1000 {
			break // bounded: a client listing garbage names cannot grow memory
		}
		if w.ts.unknown == nil {
			w.ts.unknown = map[string]struct{}{}
		}
		w.ts.unknown[n] = struct{}{}
		fresh = append(fresh, n)
	}
	if len(fresh) > 0 {
		slices.Sort(fresh)
		s.metrics.unknown.WithLabelValues(typeLabel(w.typ)).Add(float64(len(fresh)))
		shown := make([]string, 0, 5)
		for _, n := range fresh[:min(len(fresh), 5)] {
			shown = append(shown, truncate(n, 200))
		}
		s.log.Info("xds: proxy asked for resources Meridian does not have", "proxy", w.st.proxy.ID, "stream", w.st.key, "type", typeLabel(w.typ), "count", len(fresh), "names", strings.Join(shown, ", "))
	}
	return fresh
}

func byName(a, b *entry) int { return strings.Compare(a.name, b.name) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
