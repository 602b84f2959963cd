package listen

import (
	"bufio"
	"context"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// forwardProxy serves a sidecar's HTTP proxy port: applications that are
// told to use an HTTP proxy (HTTP_PROXY, https_proxy) send absolute-form
// requests and CONNECT tunnels here, and they are routed exactly as
// captured traffic to the same destination would be — including the
// outbound traffic policy, so REGISTRY_ONLY refuses unknown hosts here too.
type forwardProxy struct {
	m    *Manager
	once sync.Once
	srv  *http.Server
	q    chan net.Conn
	done chan struct{}
}

type fwdConn struct {
	net.Conn
	ci *downstream.ConnInfo
}

func (f *forwardProxy) serve(c net.Conn, ci *downstream.ConnInfo) {
	f.once.Do(f.start)
	select {
	case f.q <- &fwdConn{Conn: c, ci: ci}:
	case <-f.done:
		c.Close()
	}
}

func (f *forwardProxy) start() {
	f.q, f.done = make(chan net.Conn), make(chan struct{})
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: xdsconfig.DefaultRequestHeadersTimeout,
		IdleTimeout:       time.Hour,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return downstream.With(ctx, c.(*fwdConn).ci)
		},
		ErrorLog: log.New(discardWriter{}, "", 0),
	}
	f.m.wg.Add(2)
	go func() {
		defer f.m.wg.Done()
		_ = f.srv.Serve(chanListener{f.q, f.done})
	}()
	go func() {
		defer f.m.wg.Done()
		<-f.m.ctx.Done()
		close(f.done)
		f.srv.Close()
	}()
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

type chanListener struct {
	q    chan net.Conn
	done chan struct{}
}

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.q:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return &net.TCPAddr{} }

func (f *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci := downstream.From(r.Context())
	switch {
	case r.Method == http.MethodConnect:
		f.connect(w, r, ci)
	case r.URL.IsAbs():
		f.absolute(w, r, ci)
	default:
		http.Error(w, "this port is an HTTP proxy: send absolute-form requests or CONNECT", http.StatusBadRequest)
	}
}

// destination resolves host:port to the original destination captured
// traffic would have had. A name the resolver does not know (a mesh host
// such as NAME.NS.svc.cluster.local outside Kubernetes) keeps the
// unspecified address: routing by Host or SNI does not need it.
func (f *forwardProxy) destination(ctx context.Context, host string, port uint16) netip.AddrPort {
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), port)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host); err == nil && len(ips) > 0 {
		return netip.AddrPortFrom(ips[0].Unmap(), port)
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), port)
}

// outboundFor is the listener captured traffic to dest would reach.
func (f *forwardProxy) outboundFor(dest netip.AddrPort) *lstate {
	if st := f.m.lookupDest(dest); st != nil {
		return st
	}
	for _, st := range *f.m.states.Load() {
		if st.cfg.UseOriginalDst && st.dir == downstream.Outbound {
			return st
		}
	}
	return nil
}

func (f *forwardProxy) connect(w http.ResponseWriter, r *http.Request, ci *downstream.ConnInfo) {
	host, ps, err := net.SplitHostPort(r.Host)
	port, perr := strconv.ParseUint(ps, 10, 16)
	if err != nil || perr != nil || port == 0 {
		http.Error(w, "CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	dest := f.destination(r.Context(), host, uint16(port))
	st := f.outboundFor(dest)
	if st == nil {
		http.Error(w, "no outbound listener", http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot tunnel", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err := rw.WriteString("HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil || rw.Flush() != nil {
		conn.Close()
		return
	}
	tunnel := &downstream.ConnInfo{Listener: ci.Listener, Direction: downstream.Outbound, Source: ci.Source, Dest: dest, Authority: r.Host}
	f.m.dispatch(&bufferedConn{Conn: conn, r: rw.Reader}, tunnel, st)
}

func (f *forwardProxy) absolute(w http.ResponseWriter, r *http.Request, ci *downstream.ConnInfo) {
	port := uint16(80)
	if r.URL.Scheme == "https" {
		port = 443
	}
	if p := r.URL.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			http.Error(w, "bad port", http.StatusBadRequest)
			return
		}
		port = uint16(n)
	}
	dest := f.destination(r.Context(), r.URL.Hostname(), port)
	st := f.outboundFor(dest)
	var ch *chainRT
	if st != nil {
		facts := connFacts{dest: dest, source: ci.Source, transport: "raw_buffer", alpn: []string{"http/1.1"}}
		var ok bool
		if ch, ok = selectChain(st.chains, func(c *chainRT) *xdsconfig.ChainMatch { return &c.cfg.Match }, facts); !ok {
			ch = st.def
		}
	}
	if ch == nil || ch.handler == nil {
		f.m.o.Telemetry.Metrics.Refused.WithLabelValues(ci.Listener).Inc()
		http.Error(w, "no HTTP route to "+r.Host, http.StatusBadGateway)
		return
	}
	sub := &downstream.ConnInfo{Listener: ci.Listener, Direction: downstream.Outbound, Source: ci.Source, Dest: dest}
	r = r.WithContext(downstream.With(r.Context(), sub))
	r.Host = r.URL.Host
	ch.handler.ServeHTTP(w, r)
}

// bufferedConn reads what the HTTP server had buffered before the tunnel
// began, then the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
