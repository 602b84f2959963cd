package httpproxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/upstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Env is what the HTTP layer reads from the running configuration. Its
// methods are called for every request, concurrently, and must not block.
type Env interface {
	// Cluster returns a cluster by name, nil when there is none.
	Cluster(name string) *upstream.Cluster
	// Routes returns a route configuration by name, nil when there is none.
	Routes(name string) *xdsconfig.RouteConfig
}

// MaxRetryBody is the largest request body kept for replays: retries,
// mirrors, and a request resent after a dead pooled connection.
const MaxRetryBody = 64 << 10

// Options configure a Handler.
type Options struct {
	// Listener names the listener the handler serves, for metrics.
	Listener  string
	Env       Env
	Telemetry *telemetry.Telemetry
	Shadows   *Shadows
	Logger    *slog.Logger
	// TraceAll makes spans for every request, not only on managers that
	// ask for tracing.
	TraceAll bool
}

// Handler serves the requests of one HTTP connection manager.
type Handler struct {
	hcm    *xdsconfig.HTTPManager
	o      Options
	faults atomic.Int64
}

// NewHandler builds the handler of a connection manager.
func NewHandler(hcm *xdsconfig.HTTPManager, o Options) *Handler {
	return &Handler{hcm: hcm, o: o}
}

// exchange is one request's state, shared by the handler, the
// RoundTripper and the response hooks through the request's context.
type exchange struct {
	// ctx is the incoming request's: it ends when the client goes away.
	ctx         context.Context
	conn        *downstream.ConnInfo
	start       time.Time
	rc          *xdsconfig.RouteConfig
	vh          *xdsconfig.VirtualHost
	route       *xdsconfig.Route
	clusterName string
	cluster     *upstream.Cluster
	grpc        bool
	h2          bool
	// body is the request body kept for replay (retries, mirrors);
	// replayable says whether it is complete.
	body       []byte
	replayable bool
	tracked    *trackedBody
	// Results.
	host        *lb.Host
	attempts    int
	flags       flags
	code        int
	respBytes   int64
	srcPeer     telemetry.Peer
	dstPeer     telemetry.Peer
	upstreamTLS string
	span        trace.Span
	spanCtx     context.Context
	requestID   string
	// rec wraps the response writer (here, not apart: one allocation).
	rec recorder
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(r.Context(), w, r) }

// serve handles r in ctx, its connection's context: the HTTP/1 server
// passes it here rather than copying each request to attach it.
func (h *Handler) serve(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	ci := downstream.From(ctx)
	x := &exchange{ctx: ctx, conn: ci, start: time.Now(), h2: r.ProtoMajor == 2,
		grpc: strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")}
	x.rec.ResponseWriter = w
	rec := &x.rec
	defer h.finish(x, r, rec)

	if n := headerCount(r.Header); n > h.hcm.MaxHeadersCount {
		h.reject(ci, "too_many_headers")
		h.localReply(rec, x, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("too many headers: %d > %d", n, h.hcm.MaxHeadersCount))
		return
	}
	if ci.Authority != "" {
		r.Host = ci.Authority
	}
	h.peerLabels(x, r)
	x.requestID = r.Header.Get("X-Request-Id")
	if x.requestID == "" {
		x.requestID = newRequestID()
		r.Header.Set("X-Request-Id", x.requestID)
	}
	if t := h.o.Telemetry.Tracing; t != nil && (h.hcm.Tracing || h.o.TraceAll) {
		kind := trace.SpanKindClient
		if ci.Direction == downstream.Inbound {
			kind = trace.SpanKindServer
		}
		x.spanCtx, x.span = t.Start(r, kind, r.Host)
		defer x.span.End()
	}

	x.rc = h.hcm.Routes
	if x.rc == nil {
		x.rc = h.o.Env.Routes(h.hcm.RDS)
	}
	if x.rc == nil {
		x.flags.add(flagNoRoute)
		h.localReply(rec, x, http.StatusNotFound, "route configuration "+h.hcm.RDS+" not received")
		return
	}
	if x.vh = x.rc.VirtualHost(r.Host); x.vh != nil {
		x.route = x.vh.Match(r, pickMillion)
	}
	if x.route == nil {
		x.flags.add(flagNoRoute)
		h.localReply(rec, x, http.StatusNotFound, "no route for "+r.Host+r.URL.Path)
		return
	}
	x.clusterName = chooseCluster(x.route, r)
	if h.refusedByPolicy(rec, x) {
		return
	}

	var principal string
	var claims map[string]any
	for _, f := range h.hcm.Filters {
		switch f.Kind {
		case xdsconfig.FilterJWT:
			p, c, err := f.JWT.Authenticate(x.ctx, r.Header)
			if err != nil {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="`+r.Host+`"`)
				h.localReply(rec, x, http.StatusUnauthorized, "Jwt verification fails: "+err.Error())
				return
			}
			principal, claims = p, c
		case xdsconfig.FilterRBAC:
			authz := f.Authz
			for _, pf := range []xdsconfig.PerFilter{x.vh.PerFilter, x.route.PerFilter} {
				if pf.AuthzDisabled {
					authz = nil
				} else if pf.Authz != nil {
					authz = pf.Authz
				}
			}
			if authz == nil {
				continue
			}
			in := &xdsconfig.AuthzInput{PeerID: ci.PeerID, PeerSubject: ci.PeerSubject, Source: ci.Source, Dest: ci.Dest, SNI: ci.SNI, Request: r, RequestPrincipal: principal, Claims: claims}
			if ok, _ := authz.Authorize(in); !ok {
				x.flags.add(flagRBAC)
				h.reject(ci, "rbac")
				h.localReply(rec, x, http.StatusForbidden, "RBAC: access denied")
				return
			}
		case xdsconfig.FilterFault:
			ft := f.Fault
			for _, o := range []*xdsconfig.Fault{x.vh.PerFilter.Fault, x.route.PerFilter.Fault} {
				if o != nil {
					ft = o
				}
			}
			if !ft.Disabled() && h.fault(rec, r, x, ft) {
				return
			}
		case xdsconfig.FilterRouter:
			h.router(rec, r, x)
		}
	}
}

// refusedByPolicy answers requests routed to the BlackHoleCluster: the
// outbound policy (REGISTRY_ONLY) refuses them, and says so in the log.
func (h *Handler) refusedByPolicy(w http.ResponseWriter, x *exchange) bool {
	if x.route.Action != xdsconfig.ActionDirect && x.clusterName == BlackHoleCluster {
		h.o.Telemetry.Metrics.Refused.WithLabelValues(x.conn.Listener).Inc()
		h.o.Logger.Info("httpproxy: refused by the outbound traffic policy (REGISTRY_ONLY): host is not in the registry",
			"listener", x.conn.Listener, "authority", x.vhAuthority())
		x.flags.add(flagNoRoute)
		h.localReply(w, x, http.StatusBadGateway, "refused: the outbound traffic policy only allows registered hosts")
		return true
	}
	return false
}

func (x *exchange) vhAuthority() string {
	if x.vh != nil {
		return x.vh.Name
	}
	return ""
}

// BlackHoleCluster is the cluster name of refused outbound traffic.
const BlackHoleCluster = "BlackHoleCluster"

func headerCount(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

func pickMillion() uint32 { return rand.Uint32N(1_000_000) }

// chooseCluster resolves a route's destination for this request.
func chooseCluster(rt *xdsconfig.Route, r *http.Request) string {
	switch rt.Action {
	case xdsconfig.ActionCluster:
		return rt.Cluster
	case xdsconfig.ActionWeighted:
		n := rand.Uint32N(rt.TotalWeight)
		for _, wc := range rt.Weighted {
			if n < wc.Weight {
				return wc.Name
			}
			n -= wc.Weight
		}
		return rt.Weighted[len(rt.Weighted)-1].Name
	case xdsconfig.ActionClusterHeader:
		return r.Header.Get(rt.ClusterHeader)
	}
	return ""
}

// fault applies a fault filter configuration; true when it answered.
func (h *Handler) fault(w http.ResponseWriter, r *http.Request, x *exchange, f *xdsconfig.Fault) bool {
	if len(f.UpstreamClusters) > 0 && !contains(f.UpstreamClusters, x.clusterName) {
		return false
	}
	for i := range f.Headers {
		if !f.Headers[i].Match(r) {
			return false
		}
	}
	if f.MaxActive > 0 && h.faults.Load() >= int64(f.MaxActive) {
		return false
	}
	h.faults.Add(1)
	defer h.faults.Add(-1)
	delay, delayPM := f.Delay, f.DelayPerMillion
	if f.DelayFromHeader {
		delay = headerMillis(r, "X-Envoy-Fault-Delay-Request")
	}
	if delay > 0 && pickMillion() < delayPM {
		x.flags.add(flagDelayInjected)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-x.ctx.Done():
			t.Stop()
			return true
		}
	}
	status := f.AbortStatus
	if f.AbortFromHeader {
		status = int(headerMillis(r, "X-Envoy-Fault-Abort-Request") / time.Millisecond)
	}
	if (status > 0 || f.AbortGRPC >= 0) && pickMillion() < f.AbortPerMillion {
		x.flags.add(flagFaultInjected)
		if f.AbortGRPC >= 0 && x.grpc {
			h.grpcReply(w, x, f.AbortGRPC, "fault filter abort")
			return true
		}
		h.localReply(w, x, max(status, 200), "fault filter abort")
		return true
	}
	return false
}

// headerMillis reads a header holding milliseconds (the fault filter's
// header-controlled faults).
func headerMillis(r *http.Request, name string) time.Duration {
	var n int64
	if _, err := fmt.Sscan(r.Header.Get(name), &n); err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, 3_600_000)) * time.Millisecond
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// router is the terminal filter: a direct response, a redirect, or the
// upstream.
func (h *Handler) router(w http.ResponseWriter, r *http.Request, x *exchange) {
	rt := x.route
	switch rt.Action {
	case xdsconfig.ActionDirect:
		x.code = rt.Direct.Status
		w.WriteHeader(rt.Direct.Status)
		n, _ := w.Write(rt.Direct.Body)
		x.respBytes = int64(n)
		return
	case xdsconfig.ActionRedirect:
		x.code = rt.Redirect.Code
		http.Redirect(w, r, redirectURL(r, rt), rt.Redirect.Code)
		return
	}
	x.cluster = h.o.Env.Cluster(x.clusterName)
	if x.cluster == nil {
		x.flags.add(flagNoCluster)
		h.localReply(w, x, http.StatusServiceUnavailable, "cluster "+x.clusterName+" not found")
		return
	}
	if cat := x.cluster.LB.Drop(); cat != "" {
		x.flags.add(flagDropOverload)
		h.localReply(w, x, http.StatusServiceUnavailable, "dropped by the load assignment's "+cat+" overload policy")
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Bodies of known, bounded size are kept whether or not the route
		// retries: a request that meets a dead pooled connection is sent
		// again (upstream.Cluster.RoundTrip), and mirrors need a copy. A
		// client that waits for 100 Continue gets it from the upstream,
		// unless the route retries or mirrors.
		keep := x.retryPolicy() != nil || len(rt.Mirrors) > 0 || !expectsContinue(r)
		if keep && r.ContentLength >= 0 && r.ContentLength <= MaxRetryBody {
			body, err := readAll(r.Body, r.ContentLength)
			if err != nil {
				x.flags.add(flagDownstreamReset)
				h.localReply(w, x, http.StatusBadRequest, "reading the request body: "+err.Error())
				return
			}
			x.body, x.replayable = body, true
		} else {
			x.tracked = &trackedBody{ReadCloser: r.Body}
			r.Body = x.tracked
		}
	} else {
		x.replayable = true
	}
	for _, m := range rt.Mirrors {
		if x.replayable && pickMillion() < m.PerMillion {
			h.o.Shadows.send(h, r, x, m.Cluster)
		}
	}
	ctx := x.ctx
	if x.spanCtx != nil {
		ctx = trace.ContextWithSpan(ctx, x.span)
	}
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
	}
	h.forward(w, r, x, ctx)
}

func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

func (x *exchange) retryPolicy() *xdsconfig.RetryPolicy {
	if x.route == nil {
		return nil
	}
	return x.route.Retry
}

func redirectURL(r *http.Request, rt *xdsconfig.Route) string {
	rd := rt.Redirect
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	if rd.Scheme != "" {
		u.Scheme = rd.Scheme
	}
	if rd.Host != "" {
		u.Host = rd.Host
	}
	if rd.Port != 0 {
		u.Host = fmt.Sprintf("%s:%d", strings.Split(u.Host, ":")[0], rd.Port)
	}
	switch {
	case rd.Path != "":
		u.Path = rd.Path
	case rd.PrefixRewrite != "":
		u.Path = rewritePrefix(rt, u.Path, rd.PrefixRewrite)
	}
	if rd.StripQuery {
		u.RawQuery = ""
	}
	return u.String()
}

// rewrite prepares the outgoing request: the upstream address is set per
// attempt.
func (h *Handler) rewrite(out, in *http.Request, x *exchange) {
	out.URL.Scheme, out.URL.Host = "http", x.clusterName
	// A sidecar keeps the incoming X-Forwarded-For and -Proto as they
	// came, a gateway appends.
	if out.Header.Get("X-Forwarded-Proto") == "" {
		if in.TLS != nil {
			out.Header.Set("X-Forwarded-Proto", "https")
		} else {
			out.Header.Set("X-Forwarded-Proto", "http")
		}
	}
	if h.hcm.UseRemoteAddress && x.conn.Source.IsValid() {
		// Appends the client to the X-Forwarded-For the client sent.
		(&httputil.ProxyRequest{In: in, Out: out}).SetXForwarded()
	}
	rt := x.route
	out.Host = in.Host
	switch {
	case rt.HostRewrite != "":
		out.Host = rt.HostRewrite
	case rt.AutoHostRewrite:
		out.Host = "" // the transport uses the endpoint's address
	}
	if rt.PrefixRewrite != "" {
		out.URL.Path = rewritePrefix(rt, in.URL.Path, rt.PrefixRewrite)
		out.URL.RawPath = ""
	} else if rt.RegexRewrite != nil {
		out.URL.Path = rt.RegexRewrite.ReplaceAllString(in.URL.Path, rt.RegexSubst)
		out.URL.RawPath = ""
	}
	for _, ops := range []*xdsconfig.HeaderOps{&rt.Headers, &x.vh.Headers, &x.rc.Headers} {
		applyOps(out.Header, ops.RequestAdd, ops.RequestRemove)
	}
	switch x.conn.Direction {
	case downstream.Inbound:
		// The application gets no mesh-internal labels.
		out.Header.Del(telemetry.PeerHeader)
	case downstream.Outbound:
		out.Header.Set(telemetry.PeerHeader, h.o.Telemetry.SelfHeader())
	}
	if h.hcm.ForwardClientCert && x.conn.PeerID != "" {
		out.Header.Set("X-Forwarded-Client-Cert", "URI="+x.conn.PeerID)
	}
	if x.span != nil {
		h.o.Telemetry.Tracing.Inject(trace.ContextWithSpan(out.Context(), x.span), out.Header)
	}
}

func rewritePrefix(rt *xdsconfig.Route, path, prefix string) string {
	if m := matchedPrefix(rt, path); m != "" {
		return prefix + path[len(m):]
	}
	return path
}

// matchedPrefix is the part of the path a prefix (or exact) match
// consumed.
func matchedPrefix(rt *xdsconfig.Route, path string) string {
	p := rt.Match.Prefix()
	if p != "" && len(path) >= len(p) && strings.EqualFold(path[:len(p)], p) {
		return path[:len(p)]
	}
	return ""
}

func applyOps(h http.Header, add []xdsconfig.HeaderValue, remove []string) {
	for _, k := range remove {
		h.Del(k)
	}
	for _, hv := range add {
		if hv.Append {
			h.Add(hv.Key, hv.Value)
		} else {
			h.Set(hv.Key, hv.Value)
		}
	}
}

// modifyResponse runs on every upstream response before it is copied.
func (h *Handler) modifyResponse(resp *http.Response, x *exchange) {
	x.code = resp.StatusCode
	if x.conn.Direction == downstream.Outbound {
		if p, ok := telemetry.ParsePeer(resp.Header.Get(telemetry.PeerHeader)); ok {
			x.dstPeer = mergePeer(p, x.dstPeer)
		}
		resp.Header.Del(telemetry.PeerHeader)
	}
	if x.conn.Direction == downstream.Inbound {
		resp.Header.Set(telemetry.PeerHeader, h.o.Telemetry.SelfHeader())
	}
	rt := x.route
	for _, ops := range []*xdsconfig.HeaderOps{&rt.Headers, &x.vh.Headers, &x.rc.Headers} {
		applyOps(resp.Header, ops.ResponseAdd, ops.ResponseRemove)
	}
}

// peerLabels sets the request's source and destination labels from what
// is known before it is forwarded.
func (h *Handler) peerLabels(x *exchange, r *http.Request) {
	self := h.o.Telemetry.Self
	switch x.conn.Direction {
	case downstream.Inbound:
		x.dstPeer = self
		if p, ok := telemetry.ParsePeer(r.Header.Get(telemetry.PeerHeader)); ok {
			x.srcPeer = p
		}
		x.srcPeer = mergePeer(x.srcPeer, telemetry.PeerFromSPIFFE(x.conn.PeerID))
	default:
		x.srcPeer = self
		r.Header.Del(telemetry.PeerHeader)
	}
}

// mergePeer fills a's empty labels from b.
func mergePeer(a, b telemetry.Peer) telemetry.Peer {
	if a.Workload == "" {
		a.Workload = b.Workload
	}
	if a.Namespace == "" {
		a.Namespace = b.Namespace
	}
	if a.Cluster == "" {
		a.Cluster = b.Cluster
	}
	if a.Locality == "" {
		a.Locality = b.Locality
	}
	return a
}

// finish records the request: metrics, access log, span status.
func (h *Handler) finish(x *exchange, r *http.Request, rec *recorder) {
	if x.code == 0 {
		x.code = rec.code
	}
	if x.code == 0 {
		x.code = http.StatusOK
	}
	if x.ctx.Err() != nil && rec.code == 0 {
		x.flags.add(flagDownstreamReset)
	}
	dur := time.Since(x.start)
	if x.host != nil {
		x.dstPeer = mergePeer(x.dstPeer, telemetry.Peer{Locality: x.host.Locality().String()})
	}
	x.dstPeer = mergePeer(x.dstPeer, telemetry.PeerFromSPIFFE(x.upstreamTLS))
	var reqBytes int64
	if x.body != nil {
		reqBytes = int64(len(x.body))
	} else if x.tracked != nil {
		reqBytes = x.tracked.n.Load()
	} else if r.ContentLength > 0 {
		reqBytes = r.ContentLength
	}
	tel := h.o.Telemetry
	flags := x.flags.String()
	tel.Metrics.ObserveRequest(&telemetry.Request{
		Labels:        telemetry.Labels{Reporter: x.conn.Direction.Reporter(), Source: x.srcPeer, Destination: x.dstPeer, Service: x.clusterName},
		Code:          statusText(x.code),
		Flags:         flags,
		Seconds:       dur.Seconds(),
		RequestBytes:  reqBytes,
		ResponseBytes: rec.n,
	})
	if tel.Access != nil {
		e := &telemetry.HTTPEntry{
			Start: x.start, Listener: x.conn.Listener, Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto,
			Authority: r.Host, Code: x.code, Flags: flags, BytesIn: reqBytes, BytesOut: rec.n, Duration: dur,
			UpstreamCluster: x.clusterName, Downstream: x.conn.Source.String(), Peer: x.conn.PeerID,
			UserAgent: r.UserAgent(), RequestID: x.requestID, ForwardedFor: r.Header.Get("X-Forwarded-For"), Attempts: x.attempts,
		}
		if x.route != nil {
			e.Route = x.route.Name
		}
		if x.host != nil {
			e.UpstreamHost = x.host.Addr
		}
		if x.span != nil {
			e.TraceID = x.span.SpanContext().TraceID().String()
		}
		tel.Access.HTTP(e)
	}
}

var statusTexts = func() [600]string {
	var s [600]string
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	return s
}()

func statusText(code int) string {
	if code >= 0 && code < len(statusTexts) {
		return statusTexts[code]
	}
	return fmt.Sprint(code)
}

func (h *Handler) reject(ci *downstream.ConnInfo, reason string) {
	h.o.Telemetry.Metrics.Rejected.WithLabelValues(ci.Listener, reason).Inc()
}

// newRequestID returns a random UUID (version 4), as Envoy generates for
// x-request-id.
func newRequestID() string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], rand.Uint64())
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	raw[6] = raw[6]&0x0f | 0x40 // version 4
	raw[8] = raw[8]&0x3f | 0x80 // variant 10
	var out [36]byte
	hex.Encode(out[0:8], raw[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], raw[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], raw[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], raw[8:10])
	out[23] = '-'
	hex.Encode(out[24:], raw[10:])
	return string(out[:])
}
