package httpproxy

//lint:file-ignore SA1019 x/net/http2's ServeConn serves HTTP/2 on a connection already accepted and sniffed; net/http has no per-connection equivalent.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Peeker is a connection whose first bytes can be looked at without
// consuming them (the listener layer's sniffing connection).
type Peeker interface {
	Peek(n int) ([]byte, error)
}

// Server serves HTTP on the connections of one filter chain.
type Server struct {
	h    *Handler
	hcm  *xdsconfig.HTTPManager
	h1   *http.Server
	h2   *http2.Server
	lis  *connQueue
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewServer starts serving a handler's connections; Close stops it.
func NewServer(h *Handler) *Server {
	hcm := h.hcm
	s := &Server{h: h, hcm: hcm, lis: newConnQueue(), conns: map[net.Conn]struct{}{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.h1 = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: hcm.RequestHeadersTimeout,
		IdleTimeout:       hcm.IdleTimeout,
		MaxHeaderBytes:    hcm.MaxRequestHeadersBytes,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ec := c.(*edgeConn)
			return downstream.With(context.WithValue(ctx, edgeKey{}, ec), ec.ci)
		},
		// net/http logs refused requests itself; they are counted here.
		ErrorLog: log.New(discard{}, "", 0),
	}
	s.h2 = &http2.Server{
		MaxConcurrentStreams: hcm.MaxConcurrentStreams,
		IdleTimeout:          hcm.IdleTimeout,
		CountError: func(errType string) {
			h.o.Telemetry.Metrics.Rejected.WithLabelValues(h.o.Listener, "h2_"+errType).Inc()
		},
	}
	if err := http2.ConfigureServer(s.h1, s.h2); err != nil {
		// Only a TLS config without HTTP/2-capable ciphers fails here,
		// and this server has no TLS config of its own.
		panic("httpproxy: " + err.Error())
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.h1.Serve(s.lis)
	}()
	return s
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Close stops serving and closes every connection; idempotent.
func (s *Server) Close() {
	s.stop()
	s.h1.Close()
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Closing untracks, which takes the lock: close outside it.
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
}

// Shutdown stops taking requests and waits for the ones in flight until
// ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) {
	_ = s.h1.Shutdown(ctx)
	s.Close()
}

var h2Preface = []byte(http2.ClientPreface)

// ServeConn serves one connection: HTTP/2 when TLS negotiated h2 or the
// client sent the HTTP/2 preface (or the codec says so), else HTTP/1.1.
// It returns at once for HTTP/1.1 (net/http owns the connection) and when
// the connection ends for HTTP/2.
func (s *Server) ServeConn(c net.Conn, ci *downstream.ConnInfo) {
	ec := &edgeConn{Conn: c, ci: ci, s: s}
	h2 := s.hcm.Codec == xdsconfig.CodecHTTP2
	if tc, ok := c.(*tls.Conn); ok {
		h2 = h2 || tc.ConnectionState().NegotiatedProtocol == "h2"
	} else if s.hcm.Codec == xdsconfig.CodecAuto {
		p, ok := c.(Peeker)
		if !ok {
			bc := &bufferedConn{Conn: c, r: bufio.NewReader(c)}
			p, c, ec.Conn = bc, bc, bc
		}
		c.SetReadDeadline(time.Now().Add(s.hcm.RequestHeadersTimeout))
		b, err := p.Peek(len(h2Preface))
		c.SetReadDeadline(time.Time{})
		if err != nil && len(b) == 0 {
			s.reject(ci, "header_timeout")
			c.Close()
			return
		}
		h2 = bytes.Equal(b, h2Preface)
	}
	if !s.track(ec) {
		c.Close()
		return
	}
	if !h2 {
		if !s.lis.put(ec) {
			s.untrack(ec)
			c.Close()
		}
		return
	}
	defer s.untrack(ec)
	ctx := downstream.With(context.WithValue(s.ctx, edgeKey{}, ec), ci)
	s.h2.ServeConn(ec, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.h1, Handler: http.HandlerFunc(s.serveHTTP)})
}

func (s *Server) track(c *edgeConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *edgeConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) reject(ci *downstream.ConnInfo, reason string) {
	s.h.o.Telemetry.Metrics.Rejected.WithLabelValues(ci.Listener, reason).Inc()
}

type edgeKey struct{}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if ec, ok := r.Context().Value(edgeKey{}).(*edgeConn); ok {
		ec.handled.Add(1)
	}
	s.h.ServeHTTP(w, r)
}

// bufferedConn lets the codec sniff a connection's first bytes.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Peek(n int) ([]byte, error) { return b.r.Peek(n) }

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// edgeConn counts what the HTTP stacks refuse on their own: a response
// written for a request no handler saw is a refusal (400 malformed, 431
// headers too large), and a read deadline hit in the middle of a request's
// headers is a slow client. Idle keep-alive timeouts are not refusals.
type edgeConn struct {
	net.Conn
	ci        *downstream.ConnInfo
	s         *Server
	handled   atomic.Int64 // requests that reached the handler
	responses atomic.Int64 // status lines written (1xx excluded)
	partial   atomic.Bool  // bytes of a request read since the last response
	counted   atomic.Bool
	closeOnce sync.Once
}

func (c *edgeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.partial.Store(true)
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && c.partial.Load() && c.handled.Load() <= c.responses.Load() {
		c.count("header_timeout")
	}
	return n, err
}

func (c *edgeConn) Write(p []byte) (int, error) {
	if len(p) >= 12 && bytes.HasPrefix(p, []byte("HTTP/1.")) && p[9] != '1' {
		if c.responses.Add(1) > c.handled.Load() {
			switch string(p[9:12]) {
			case "431":
				c.count("header_too_large")
			case "408":
				c.count("header_timeout")
			default:
				c.count("malformed")
			}
		}
		c.partial.Store(false)
	}
	return c.Conn.Write(p)
}

func (c *edgeConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.s.untrack(c) })
	return err
}

func (c *edgeConn) count(reason string) {
	if c.counted.CompareAndSwap(false, true) {
		c.s.reject(c.ci, reason)
	}
}

// connQueue is a net.Listener fed with connections the listener layer
// accepted and classified.
type connQueue struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }
