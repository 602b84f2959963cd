package upstream

//lint:file-ignore SA1019 x/net/http2's Transport dials h2c and HTTP/2 over the proxy's own TLS connections; net/http's needs its own dialer and ALPN.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sync/semaphore"

	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/internal/sockio"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Errors that map to Envoy's response flags.
var (
	// ErrNoHost: no endpoint to send to (UH).
	ErrNoHost = errors.New("upstream: no healthy upstream")
	// ErrOverflow: a circuit breaker is open (UO).
	ErrOverflow = errors.New("upstream: circuit breaker overflow")
)

// ConnectError is a failure to connect (or to complete the TLS handshake)
// to an endpoint (UF): safe to retry on another endpoint.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("upstream: connect to %s: %v", e.Addr, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Deps are what clusters share.
type Deps struct {
	Secrets  *identity.Secrets
	Resolver *Resolver
	// OnOverflow is told the breaker that refused (connections, pending,
	// requests, retries).
	OnOverflow func(cluster, breaker string)
	// OnStale is told of every request that met a dead pooled connection
	// and is sent again.
	OnStale func(cluster string)
	// OnNoHost is told of every pick that found no healthy host (Envoy's
	// upstream_cx_none_healthy).
	OnNoHost func(cluster string)
	// OnEject is told of outlier ejections.
	OnEject func(cluster string, h *lb.Host, ejected bool, reason string)
}

// Cluster is one cluster at run time. Safe for concurrent use.
type Cluster struct {
	name string
	deps Deps
	LB   *lb.Balancer

	state atomic.Pointer[clusterState]

	requests, retries, pending atomic.Int64
	connsUsed                  atomic.Int64

	origMu sync.Mutex
	orig   map[netip.AddrPort]*lb.Host
}

// clusterState is what a CDS update replaces as a whole: the config, the
// breakers' semaphore and the transports (which depend on TLS and
// protocol settings).
type clusterState struct {
	cfg       *xdsconfig.Cluster
	connSlots *semaphore.Weighted
	tr        *transports
}

// transports are a cluster's connection pools, built on first use: a
// proxy holding a thousand clusters it never calls holds no pools for
// them.
type transports struct {
	once   sync.Once
	built  atomic.Bool
	tlsCfg *tls.Config // nil for plaintext
	h1     *http.Transport
	h2     *http2.Transport
	// fast carries plaintext HTTP/1.1 requests it can (see h1Pool); nil
	// when every request takes h1.
	fast *h1Pool
}

// pools returns the state's transports, building them the first time.
func (c *Cluster) pools(st *clusterState) *transports {
	st.tr.once.Do(func() {
		c.buildTransports(st)
		st.tr.built.Store(true)
	})
	return st.tr
}

func (t *transports) closeIdle() {
	if t.built.Load() {
		t.h1.CloseIdleConnections()
		t.h2.CloseIdleConnections()
		if t.fast != nil {
			t.fast.closeIdle(false)
		}
	}
}

// retire closes the idle connections of transports no longer used; the
// fast pool also closes those still busy when they come back.
func (t *transports) retire() {
	t.closeIdle()
	if t.built.Load() && t.fast != nil {
		t.fast.closeIdle(true)
	}
}

// New builds a cluster from its configuration.
func New(cfg *xdsconfig.Cluster, deps Deps) *Cluster {
	c := &Cluster{name: cfg.Name, deps: deps}
	c.LB = lb.New(c.lbConfig(cfg))
	c.Update(cfg)
	if cfg.Static != nil {
		c.SetEndpoints(cfg.Static)
	}
	return c
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Config returns the cluster's current configuration.
func (c *Cluster) Config() *xdsconfig.Cluster { return c.state.Load().cfg }

func (c *Cluster) lbConfig(cfg *xdsconfig.Cluster) lb.Config {
	lc := lb.Config{Policy: cfg.LB, ChoiceCount: cfg.ChoiceCount, LocalityWeighted: cfg.LocalityWeighted,
		PanicThreshold: cfg.PanicThreshold, Outlier: cfg.Outlier}
	if c.deps.OnEject != nil {
		name := cfg.Name
		lc.OnEject = func(h *lb.Host, ejected bool, reason string) { c.deps.OnEject(name, h, ejected, reason) }
	}
	return lc
}

// Update applies a new configuration. Transports are rebuilt (and the old
// ones' idle connections closed) only when what they depend on changed.
func (c *Cluster) Update(cfg *xdsconfig.Cluster) {
	old := c.state.Load()
	st := &clusterState{cfg: cfg, connSlots: semaphore.NewWeighted(int64(max(cfg.Breakers.MaxConnections, 1))), tr: &transports{}}
	if old != nil && sameTransport(old.cfg, cfg) {
		st.tr = old.tr
		if old.cfg.Breakers.MaxConnections == cfg.Breakers.MaxConnections {
			st.connSlots = old.connSlots
		}
	}
	c.state.Store(st)
	if old != nil {
		c.LB.SetConfig(c.lbConfig(cfg))
		if old.tr != st.tr {
			old.tr.retire()
		}
	}
	if cfg.Static != nil && old != nil && old.cfg.Static != cfg.Static {
		c.SetEndpoints(cfg.Static)
	}
}

func sameTransport(a, b *xdsconfig.Cluster) bool {
	return a.TLS == b.TLS && a.Protocol == b.Protocol && a.ConnectTimeout == b.ConnectTimeout &&
		a.IdleTimeout == b.IdleTimeout && a.MaxRequestsPerConnection == b.MaxRequestsPerConnection && a.DNSRefresh == b.DNSRefresh
}

// SetEndpoints applies a load assignment.
func (c *Cluster) SetEndpoints(eps *xdsconfig.Endpoints) {
	c.LB.Update(eps, func(h xdsconfig.HostSpec) string {
		return net.JoinHostPort(h.Address, fmt.Sprint(h.Port))
	})
}

// Close drops the cluster's idle connections.
func (c *Cluster) Close() {
	c.state.Load().tr.retire()
}

// Pick chooses a host; orig is the connection's original destination, the
// host of ORIGINAL_DST clusters. tried are hosts a retry avoids.
func (c *Cluster) Pick(tried []*lb.Host, orig netip.AddrPort) (*lb.Host, error) {
	if c.Config().Type == xdsconfig.ClusterOriginalDst {
		if !orig.IsValid() {
			c.noHost()
			return nil, fmt.Errorf("%w: the connection has no original destination", ErrNoHost)
		}
		return c.origHost(orig), nil
	}
	h := c.LB.Pick(tried)
	if h == nil {
		c.noHost()
		return nil, ErrNoHost
	}
	return h, nil
}

func (c *Cluster) noHost() {
	if c.deps.OnNoHost != nil {
		c.deps.OnNoHost(c.name)
	}
}

// origHost keeps one Host per original destination, bounded: passthrough
// traffic to many destinations must not grow memory without limit.
func (c *Cluster) origHost(a netip.AddrPort) *lb.Host {
	c.origMu.Lock()
	defer c.origMu.Unlock()
	if h, ok := c.orig[a]; ok {
		return h
	}
	if c.orig == nil || len(c.orig) >= 4096 {
		c.orig = map[netip.AddrPort]*lb.Host{}
	}
	h := &lb.Host{Addr: a.String(), Weight: 1}
	c.orig[a] = h
	return h
}

// AcquireRequest takes a request slot (max_requests).
func (c *Cluster) AcquireRequest() (release func(), err error) {
	limit := int64(c.Config().Breakers.MaxRequests)
	if c.requests.Add(1) > limit {
		c.requests.Add(-1)
		c.overflow("requests")
		return nil, ErrOverflow
	}
	return func() { c.requests.Add(-1) }, nil
}

// AcquireRetry takes a retry slot (max_retries or the retry budget); false
// when the retry must not be made.
func (c *Cluster) AcquireRetry() (release func(), ok bool) {
	b := c.Config().Breakers
	limit := int64(b.MaxRetries)
	if b.Budget {
		limit = max(int64(b.BudgetMinConcurrency), int64(b.BudgetPercent*float64(c.requests.Load())/100))
	}
	if c.retries.Add(1) > limit {
		c.retries.Add(-1)
		c.overflow("retries")
		return nil, false
	}
	return func() { c.retries.Add(-1) }, true
}

// AcquireConnection takes a connection slot (max_connections): at once
// when one is free, else waiting as a pending request (max_pending) until
// ctx ends.
func (c *Cluster) AcquireConnection(ctx context.Context) (release func(), err error) {
	st := c.state.Load()
	sem := st.connSlots
	if !sem.TryAcquire(1) {
		if c.pending.Add(1) > int64(st.cfg.Breakers.MaxPending) {
			c.pending.Add(-1)
			c.overflow("pending")
			return nil, ErrOverflow
		}
		err := sem.Acquire(ctx, 1)
		c.pending.Add(-1)
		if err != nil {
			return nil, err
		}
	}
	c.connsUsed.Add(1)
	return func() { c.connsUsed.Add(-1); sem.Release(1) }, nil
}

// TryAcquireConnection takes a connection slot without waiting (TCP proxy).
func (c *Cluster) TryAcquireConnection() (release func(), err error) {
	sem := c.state.Load().connSlots
	if !sem.TryAcquire(1) {
		c.overflow("connections")
		return nil, ErrOverflow
	}
	c.connsUsed.Add(1)
	return func() { c.connsUsed.Add(-1); sem.Release(1) }, nil
}

func (c *Cluster) overflow(b string) {
	if c.deps.OnOverflow != nil {
		c.deps.OnOverflow(c.name, b)
	}
}

// Dial connects to a host (TLS when the cluster says so) within the
// connect timeout; sni overrides the cluster's SNI for this connection.
func (c *Cluster) Dial(ctx context.Context, h *lb.Host, sni string) (net.Conn, error) {
	st := c.state.Load()
	tr := c.pools(st)
	conn, err := c.dialTCP(ctx, st, h.Addr)
	if err != nil {
		return nil, err
	}
	if tr.tlsCfg == nil {
		return conn, nil
	}
	cfg := tr.tlsCfg
	if sni != "" && sni != cfg.ServerName {
		cfg = cfg.Clone()
		cfg.ServerName = sni
	}
	return c.handshake(ctx, st, conn, cfg, h.Addr)
}

func (c *Cluster) dialTCP(ctx context.Context, st *clusterState, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, st.cfg.ConnectTimeout)
	defer cancel()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = c.deps.Resolver.Resolve(ctx, host, st.cfg.DNSRefresh); err != nil {
			return nil, &ConnectError{Addr: addr, Err: err}
		}
	}
	d := net.Dialer{KeepAlive: 30 * time.Second}
	var last error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return sockio.Wrap(conn), nil
		}
		last = err
	}
	return nil, &ConnectError{Addr: addr, Err: last}
}

func (c *Cluster) handshake(ctx context.Context, st *clusterState, conn net.Conn, cfg *tls.Config, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, st.cfg.ConnectTimeout)
	defer cancel()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &ConnectError{Addr: addr, Err: fmt.Errorf("tls: %w", err)}
	}
	return tc, nil
}

func (c *Cluster) buildTransports(st *clusterState) {
	cfg, tr := st.cfg, st.tr
	if cfg.TLS != nil {
		tr.tlsCfg = c.deps.Secrets.ClientConfig(cfg.TLS, "")
	}
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		return c.dialTCP(ctx, st, addr)
	}
	tr.h1 = &http.Transport{
		DialContext:            dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        cfg.IdleTimeout,
		DisableCompression:     true,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	dialH1 := func(ctx context.Context, addr string) (net.Conn, error) { return c.dialTCP(ctx, st, addr) }
	if tr.tlsCfg != nil {
		h1tls := tr.tlsCfg.Clone()
		if len(h1tls.NextProtos) == 0 {
			h1tls.NextProtos = []string{"http/1.1"}
		}
		dialH1 = func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := c.dialTCP(ctx, st, addr)
			if err != nil {
				return nil, err
			}
			return c.handshake(ctx, st, conn, h1tls, addr)
		}
		tr.h1.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dialH1(ctx, addr) }
	}
	if cfg.MaxRequestsPerConnection != 1 {
		tr.fast = newH1Pool(dialH1, cfg.IdleTimeout)
	}
	if cfg.MaxRequestsPerConnection > 0 {
		// net/http has no per-connection request cap; one request per
		// connection is the strict reading of 1, and beyond 1 the cap is
		// approximated by keep-alive alone.
		tr.h1.DisableKeepAlives = cfg.MaxRequestsPerConnection == 1
	}
	tr.h2 = &http2.Transport{
		AllowHTTP:          true,
		DisableCompression: true,
		ReadIdleTimeout:    30 * time.Second,
		PingTimeout:        15 * time.Second,
		IdleConnTimeout:    cfg.IdleTimeout,
		DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
			conn, err := c.dialTCP(ctx, st, addr)
			if err != nil || tr.tlsCfg == nil {
				return conn, err
			}
			h2tls := tr.tlsCfg
			if len(h2tls.NextProtos) == 0 {
				h2tls = h2tls.Clone()
				h2tls.NextProtos = []string{"h2"}
			}
			return c.handshake(ctx, st, conn, h2tls, addr)
		},
	}
}

// RoundTrip sends one attempt of a request to a host. The request's URL
// host is set to the host's address; h2 selects HTTP/2 (for clusters that
// speak what the downstream spoke).
//
// A pooled connection can be dead without the pool knowing: after a
// network cut heals, the peer has long dropped it, and the first write or
// read on it meets a reset. net/http retries that itself only for
// idempotent requests. Here any request whose body can be replayed is
// sent again when it failed on a reused connection before any response
// (a reset, a broken pipe, an end of stream — not a timeout): the host
// never answered on that connection, so this is a connect failure in
// disguise, not a failed request. The cluster's other idle connections are
// closed too, as they are as old as the dead one; the next try dials.
func (c *Cluster) RoundTrip(req *http.Request, h *lb.Host, downstreamH2 bool) (*http.Response, error) {
	st := c.state.Load()
	tr := c.pools(st)
	req.URL.Host = h.Addr
	req.URL.Scheme = "http"
	useH2 := st.cfg.Protocol == xdsconfig.UpstreamHTTP2 || (st.cfg.Protocol == xdsconfig.UpstreamDownstream && downstreamH2)
	var rt http.RoundTripper = tr.h1
	if useH2 {
		rt = tr.h2
	} else if tr.tlsCfg != nil {
		req.URL.Scheme = "https"
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	var send func(*http.Request) (*http.Response, bool, error)
	switch {
	case !replayable:
		return rt.RoundTrip(req)
	case !useH2 && tr.fast != nil && !upgrading(req):
		send = func(r *http.Request) (*http.Response, bool, error) { return tr.fast.roundTrip(r, h.Addr) }
	default:
		var reused reuseTrace
		reused.trace.GotConn = reused.gotConn
		traced := req.WithContext(httptrace.WithClientTrace(req.Context(), &reused.trace))
		send = func(r *http.Request) (*http.Response, bool, error) {
			reused.reused = false
			traced.Body = r.Body
			resp, err := rt.RoundTrip(traced)
			return resp, reused.reused, err
		}
	}
	for try := 0; ; try++ {
		resp, reused, err := send(req)
		if err == nil || !reused || try == maxStaleRetries || !staleConnError(err) || req.Context().Err() != nil {
			return resp, err
		}
		if c.deps.OnStale != nil {
			c.deps.OnStale(c.name)
		}
		tr.closeIdle()
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req.Body = body
		}
	}
}

// upgrading reports whether a request asks to switch protocols (its
// response body must stay writable: net/http's transport does that).
func upgrading(req *http.Request) bool {
	return req.Header.Get("Upgrade") != ""
}

// maxStaleRetries bounds the tries on pooled connections found dead: a
// connection that was in use while the idle ones were closed may be
// returned dead to the pool and taken next.
const maxStaleRetries = 3

// reuseTrace records whether a request went out on a reused connection.
type reuseTrace struct {
	trace  httptrace.ClientTrace
	reused bool
}

func (r *reuseTrace) gotConn(info httptrace.GotConnInfo) { r.reused = info.Reused }

// staleConnError reports whether an error is what a dead pooled
// connection gives: the peer reset or closed it. Timeouts are not: a slow
// host may have the request.
func staleConnError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var ce *ConnectError
	if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		// HTTP/2: the connection died under the stream — lost (no ping
		// answer, a read error) or closed after another stream's write
		// failed on it.
		strings.Contains(err.Error(), "http2: client connection lost") ||
		strings.Contains(err.Error(), "http2: client connection force closed")
}

// UsesHTTP2 reports whether a request would go out over HTTP/2.
func (c *Cluster) UsesHTTP2(downstreamH2 bool) bool {
	p := c.Config().Protocol
	return p == xdsconfig.UpstreamHTTP2 || (p == xdsconfig.UpstreamDownstream && downstreamH2)
}
