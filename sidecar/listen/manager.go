package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/httpproxy"
	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/internal/hello"
	"github.com/meridian-mesh/meridian/sidecar/internal/sockio"
	"github.com/meridian-mesh/meridian/sidecar/tcpproxy"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Defaults of Options.
const (
	DefaultMaxConnections   = 16384
	DefaultDrainTime        = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// Env is what the proxies read from the running configuration.
type Env interface {
	httpproxy.Env
}

// Explicit is a socket the proxy binds besides the configuration's
// listeners: a sidecar's explicit inbound and upstream ports (no traffic
// capture), or its HTTP proxy port.
type Explicit struct {
	// Name labels the socket in metrics and logs.
	Name string
	Addr netip.AddrPort
	// Dest is the original destination its connections stand for: they
	// are handed to the listener bound to Dest (or its port on 0.0.0.0),
	// else to the listener named Via.
	Dest netip.AddrPort
	Via  string
	// Authority replaces the Host of HTTP requests (explicit upstreams).
	Authority string
	Direction downstream.Direction
	// HTTPProxy makes the socket an HTTP forward proxy: absolute-form
	// requests and CONNECT tunnels, routed like captured traffic.
	HTTPProxy bool
}

// Options configure a Manager. Env, Secrets and Telemetry are required.
type Options struct {
	Env       Env
	Secrets   *identity.Secrets
	Telemetry *telemetry.Telemetry
	Shadows   *httpproxy.Shadows
	Logger    *slog.Logger
	// DirectionOf says which side of the workload a listener serves.
	DirectionOf func(*xdsconfig.Listener) downstream.Direction
	// Rebind moves a listener's socket; an invalid address keeps the
	// listener from binding (its chains still serve hand-offs).
	Rebind   map[string]netip.AddrPort
	Explicit []Explicit
	// GatewayTLS terminates TLS on gateway HTTP chains that carry none
	// (an ingress gateway with given certificates).
	GatewayTLS *tls.Config
	// MaxConnections bounds open downstream connections; default 16384.
	MaxConnections int
	// DrainTime bounds how long replaced chains keep their connections.
	DrainTime time.Duration
	// HandshakeTimeout bounds TLS handshakes; default 10s.
	HandshakeTimeout time.Duration
	TraceAll         bool
}

// Manager binds sockets and dispatches connections. Create it with New,
// feed it with Update, stop it with Close.
type Manager struct {
	o      Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	active atomic.Int64
	fwd    *forwardProxy

	states atomic.Pointer[map[string]*lstate]
	byAddr atomic.Pointer[map[netip.AddrPort]*lstate]

	mu      sync.Mutex
	sockets map[netip.AddrPort]*socket
	closed  bool
}

// lstate is one listener at run time. Immutable once published.
type lstate struct {
	cfg     *xdsconfig.Listener
	dir     downstream.Direction
	chains  []*chainRT
	def     *chainRT
	inspect bool
}

type chainRT struct {
	cfg     *xdsconfig.FilterChain
	tls     *tls.Config
	handler *httpproxy.Handler
	http    *httpproxy.Server
	tcp     *tcpproxy.Proxy
}

type socket struct {
	addr netip.AddrPort
	ln   net.Listener
	cur  atomic.Pointer[binding]
}

type binding struct {
	listener string
	explicit *Explicit
}

// New returns a manager with no sockets.
func New(o Options) *Manager {
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.DrainTime <= 0 {
		o.DrainTime = DefaultDrainTime
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DirectionOf == nil {
		o.DirectionOf = func(*xdsconfig.Listener) downstream.Direction { return downstream.Outbound }
	}
	m := &Manager{o: o, log: o.Logger.With("component", "listen"), sockets: map[netip.AddrPort]*socket{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.fwd = &forwardProxy{m: m}
	empty := map[string]*lstate{}
	m.states.Store(&empty)
	emptyAddr := map[netip.AddrPort]*lstate{}
	m.byAddr.Store(&emptyAddr)
	return m
}

// Update applies a new set of listeners (by name) and binds what needs
// binding. Sockets that cannot be bound are reported in the error; the
// rest is applied.
func (m *Manager) Update(ls map[string]*xdsconfig.Listener) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("listen: closed")
	}
	old := *m.states.Load()
	states := make(map[string]*lstate, len(ls))
	byAddr := map[netip.AddrPort]*lstate{}
	var retired []*lstate
	for name, cfg := range ls {
		if cfg.API {
			continue
		}
		st := old[name]
		if st == nil || st.cfg != cfg {
			st = m.build(cfg)
			if prev := old[name]; prev != nil {
				retired = append(retired, prev)
			}
		}
		states[name] = st
		if cfg.Addr.IsValid() {
			byAddr[cfg.Addr] = st
		}
	}
	for name, st := range old {
		if _, ok := states[name]; !ok {
			retired = append(retired, st)
		}
	}
	m.states.Store(&states)
	m.byAddr.Store(&byAddr)

	want := map[netip.AddrPort]*binding{}
	for name, st := range states {
		if !st.cfg.Bind {
			continue
		}
		addr := st.cfg.Addr
		if r, ok := m.o.Rebind[name]; ok {
			addr = r
		}
		if addr.IsValid() {
			want[addr] = &binding{listener: name}
		}
	}
	for i := range m.o.Explicit {
		e := &m.o.Explicit[i]
		want[e.Addr] = &binding{explicit: e}
	}
	var errs []error
	for addr, s := range m.sockets {
		if b, ok := want[addr]; ok {
			s.cur.Store(b)
			continue
		}
		s.ln.Close()
		delete(m.sockets, addr)
	}
	for addr, b := range want {
		if _, ok := m.sockets[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("listen: %s on %s: %w", b.name(), addr, err))
			continue
		}
		s := &socket{addr: addr, ln: ln}
		s.cur.Store(b)
		m.sockets[addr] = s
		m.wg.Add(1)
		go m.acceptLoop(s)
	}
	for _, st := range retired {
		m.drain(st)
	}
	return errors.Join(errs...)
}

func (b *binding) name() string {
	if b.explicit != nil {
		return b.explicit.Name
	}
	return b.listener
}

// Addr returns the address a listener or explicit socket is bound to, for
// tests and the admin page.
func (m *Manager) Addr(name string) (net.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sockets {
		if s.cur.Load().name() == name {
			return s.ln.Addr(), true
		}
	}
	return nil, false
}

// Close stops accepting, closes every chain's connections and waits for
// every goroutine the manager started; idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		for _, s := range m.sockets {
			s.ln.Close()
		}
		m.cancel()
		for _, st := range *m.states.Load() {
			for _, c := range st.all() {
				c.close()
			}
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (st *lstate) all() []*chainRT {
	if st.def == nil {
		return st.chains
	}
	return append(st.chains[:len(st.chains):len(st.chains)], st.def)
}

func (c *chainRT) close() {
	if c.http != nil {
		c.http.Close()
	}
}

// drain retires a replaced listener's chains: open connections get
// DrainTime to finish.
func (m *Manager) drain(st *lstate) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.o.DrainTime)
		defer cancel()
		for _, c := range st.all() {
			if c.http != nil {
				c.http.Shutdown(ctx)
			}
		}
	}()
}

// build makes a listener's run-time state.
func (m *Manager) build(cfg *xdsconfig.Listener) *lstate {
	st := &lstate{cfg: cfg, dir: m.o.DirectionOf(cfg), inspect: cfg.TLSInspector || cfg.HTTPInspector}
	for _, c := range cfg.Chains {
		st.chains = append(st.chains, m.buildChain(cfg, c, st.dir))
		mt := c.Match
		if len(mt.ServerNames) > 0 || mt.TransportProtocol != "" || len(mt.ALPN) > 0 {
			st.inspect = true
		}
	}
	if cfg.Default != nil {
		st.def = m.buildChain(cfg, cfg.Default, st.dir)
	}
	return st
}

func (m *Manager) buildChain(l *xdsconfig.Listener, c *xdsconfig.FilterChain, dir downstream.Direction) *chainRT {
	rt := &chainRT{cfg: c}
	alpn := []string(nil)
	if c.HTTP != nil {
		alpn = []string{"h2", "http/1.1"}
	}
	if c.TLS != nil {
		rt.tls = m.o.Secrets.ServerConfig(c.TLS, alpn)
	} else if m.o.GatewayTLS != nil && dir == downstream.Gateway && c.HTTP != nil {
		rt.tls = m.o.GatewayTLS.Clone()
		if len(rt.tls.NextProtos) == 0 {
			rt.tls.NextProtos = alpn
		}
	}
	switch {
	case c.HTTP != nil:
		rt.handler = httpproxy.NewHandler(c.HTTP, httpproxy.Options{Listener: l.Name, Env: m.o.Env, Telemetry: m.o.Telemetry,
			Shadows: m.o.Shadows, Logger: m.log, TraceAll: m.o.TraceAll})
		rt.http = httpproxy.NewServer(rt.handler)
	case c.TCP != nil:
		rt.tcp = tcpproxy.New(c.TCP, tcpproxy.Options{Env: m.o.Env, Telemetry: m.o.Telemetry, Logger: m.log})
	}
	return rt
}

func (m *Manager) acceptLoop(s *socket) {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep going.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("listen: accept failed", "addr", s.addr, "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-m.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		b := s.cur.Load()
		if m.active.Add(1) > int64(m.o.MaxConnections) {
			m.active.Add(-1)
			m.reject(b.name(), "connection_limit")
			c.Close()
			continue
		}
		c = sockio.Wrap(c) // only connections kept: a refused one is closed at once
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handle(c, b)
		}()
	}
}

func (m *Manager) reject(listener, reason string) {
	m.o.Telemetry.Metrics.Rejected.WithLabelValues(listener, reason).Inc()
}

// handle finds the connection's listener and dispatches it.
func (m *Manager) handle(raw net.Conn, b *binding) {
	ci := &downstream.ConnInfo{Source: addrPort(raw.RemoteAddr()), Dest: addrPort(raw.LocalAddr())}
	var st *lstate
	states := *m.states.Load()
	if e := b.explicit; e != nil {
		ci.Listener, ci.Direction, ci.Authority = e.Name, e.Direction, e.Authority
		c := m.track(raw, e.Name)
		if e.HTTPProxy {
			m.fwd.serve(c, ci)
			return
		}
		ci.Dest = e.Dest
		if st = m.lookupDest(e.Dest); st == nil {
			st = states[e.Via]
		}
		if st == nil {
			m.reject(e.Name, "no_listener")
			c.Close()
			return
		}
		m.dispatch(c, ci, st)
		return
	}
	st = states[b.listener]
	if st == nil {
		m.reject(b.listener, "no_listener")
		raw.Close()
		m.active.Add(-1)
		return
	}
	if st.cfg.UseOriginalDst || st.cfg.RestoreOriginalDst {
		if od, ok := originalDst(raw); ok {
			ci.Dest = od
			if t := m.lookupDest(od); t != nil && st.cfg.UseOriginalDst {
				st = t
			}
		}
	}
	ci.Listener, ci.Direction = st.cfg.Name, st.dir
	m.dispatch(m.track(raw, st.cfg.Name), ci, st)
}

// lookupDest finds the listener for an original destination: bound to it
// exactly, or to its port on every address.
func (m *Manager) lookupDest(d netip.AddrPort) *lstate {
	byAddr := *m.byAddr.Load()
	if st, ok := byAddr[d]; ok {
		return st
	}
	if st, ok := byAddr[netip.AddrPortFrom(netip.IPv4Unspecified(), d.Port())]; ok {
		return st
	}
	return byAddr[netip.AddrPortFrom(netip.IPv6Unspecified(), d.Port())]
}

// dispatch runs the listener filters, picks the chain and serves it.
func (m *Manager) dispatch(c net.Conn, ci *downstream.ConnInfo, st *lstate) {
	facts := connFacts{dest: ci.Dest, source: ci.Source, transport: "raw_buffer"}
	conn := c
	if st.inspect {
		pc := newPeekConn(c)
		conn = pc
		c.SetReadDeadline(time.Now().Add(st.cfg.InspectTimeout))
		if err := inspect(pc, &facts); err != nil {
			m.reject(ci.Listener, err.Error())
			c.Close()
			return
		}
		c.SetReadDeadline(time.Time{})
	}
	ci.SNI = facts.sni
	ch, ok := selectChain(st.chains, func(c *chainRT) *xdsconfig.ChainMatch { return &c.cfg.Match }, facts)
	if !ok {
		ch = st.def
	}
	if ch == nil {
		m.reject(ci.Listener, "no_filter_chain")
		c.Close()
		return
	}
	m.serveChain(conn, ci, ch)
}

func (m *Manager) serveChain(conn net.Conn, ci *downstream.ConnInfo, ch *chainRT) {
	if ch.tls != nil {
		tc := tls.Server(conn, ch.tls)
		ctx, cancel := context.WithTimeout(m.ctx, m.o.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			m.reject(ci.Listener, "tls_handshake")
			m.log.Debug("listen: TLS handshake failed", "listener", ci.Listener, "peer", ci.Source, "err", err)
			conn.Close()
			return
		}
		cs := tc.ConnectionState()
		ci.PeerID, ci.PeerSubject = identity.PeerID(&cs), identity.PeerSubject(&cs)
		if cs.ServerName != "" {
			ci.SNI = cs.ServerName
		}
		conn = tc
	}
	if az := ch.cfg.Authz; az != nil {
		if ok, _ := az.Authorize(&xdsconfig.AuthzInput{PeerID: ci.PeerID, PeerSubject: ci.PeerSubject, Source: ci.Source, Dest: ci.Dest, SNI: ci.SNI}); !ok {
			m.reject(ci.Listener, "rbac")
			conn.Close()
			return
		}
	}
	switch {
	case ch.http != nil:
		ch.http.ServeConn(conn, ci)
	case ch.tcp != nil:
		ch.tcp.Serve(m.ctx, conn, ci)
	}
}

// inspect is the TLS and HTTP inspectors: it reads (without consuming)
// enough of the connection to know its transport, SNI and ALPN. A client
// that sends nothing before the deadline is a server-first protocol, and
// goes on as raw bytes.
func inspect(pc *peekConn, f *connFacts) error {
	first, err := pc.Peek(1)
	if len(first) == 0 {
		if isTimeout(err) {
			return nil
		}
		return errors.New("closed_before_data")
	}
	if first[0] != 0x16 {
		b, _ := pc.Peek(len(h2Preface))
		switch {
		case string(b) == h2Preface:
			f.alpn = []string{"h2c"}
		case looksHTTP1(b):
			f.alpn = []string{"http/1.1"}
		}
		return nil
	}
	want := 5
	for {
		b, err := pc.Peek(want)
		h, perr := hello.Parse(b)
		switch {
		case perr == nil:
			f.transport, f.sni, f.alpn = "tls", h.SNI, h.ALPN
			return nil
		case !errors.Is(perr, hello.ErrNeedMore):
			return errors.New("tls_garbage")
		case err != nil:
			if isTimeout(err) {
				return errors.New("inspect_timeout")
			}
			return errors.New("closed_before_data")
		}
		want = nextWant(b, want)
		if want > hello.MaxBytes+5*8 {
			return errors.New("tls_garbage")
		}
	}
}

// nextWant is how many bytes to peek next: through the end of the last
// record seen.
func nextWant(b []byte, have int) int {
	off := 0
	for off+5 <= len(b) {
		n := int(b[off+3])<<8 | int(b[off+4])
		off += 5 + n
	}
	if off+5 > len(b) && off <= len(b) {
		return max(off+5, have+1)
	}
	return max(off, have+1)
}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func looksHTTP1(b []byte) bool {
	for _, m := range []string{"GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN", "TRAC"} {
		if len(b) >= 4 && string(b[:4]) == m {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// track counts an accepted connection until it is closed.
func (m *Manager) track(c net.Conn, listener string) net.Conn {
	g := m.o.Telemetry.Metrics.DownstreamActive.WithLabelValues(listener)
	g.Inc()
	return &trackedConn{Conn: c, done: sync.OnceFunc(func() { m.active.Add(-1); g.Dec() })}
}

type trackedConn struct {
	net.Conn
	done func()
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.done()
	return err
}

func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Close()
}
