package httpproxy

//lint:file-ignore SA1019 x/net/http2's ServeConn serves HTTP/2 on a connection already accepted and sniffed; net/http has no per-connection equivalent.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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
	h       *Handler
	handler http.Handler // h, or a test's
	hcm     *xdsconfig.HTTPManager
	// base is never served: it is HTTP/2's base configuration, and its
	// Shutdown sends GOAWAY on HTTP/2 connections (http2.ConfigureServer
	// hooks them to it). HTTP/1.1 is h1.go's loop.
	base     *http.Server
	h2       *http2.Server
	ctx      context.Context
	stop     context.CancelFunc
	draining atomic.Bool

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	h1conns map[*h1Conn]struct{}
}

// NewServer makes a server for a handler's connections; Close stops it.
func NewServer(h *Handler) *Server {
	hcm := h.hcm
	s := &Server{h: h, handler: h, hcm: hcm, conns: map[net.Conn]struct{}{}, h1conns: map[*h1Conn]struct{}{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.base = &http.Server{
		IdleTimeout:    hcm.IdleTimeout,
		MaxHeaderBytes: hcm.MaxRequestHeadersBytes,
		// x/net/http2 logs refused requests itself; they are counted here.
		ErrorLog: log.New(discard{}, "", 0),
	}
	s.h2 = &http2.Server{
		MaxConcurrentStreams: hcm.MaxConcurrentStreams,
		IdleTimeout:          hcm.IdleTimeout,
		CountError: func(errType string) {
			h.o.Telemetry.Metrics.Rejected.WithLabelValues(h.o.Listener, "h2_"+errType).Inc()
		},
	}
	if err := http2.ConfigureServer(s.base, s.h2); err != nil {
		// Only a TLS config without HTTP/2-capable ciphers fails here,
		// and this server has no TLS config of its own.
		panic("httpproxy: " + err.Error())
	}
	return s
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Close stops serving and closes every connection; idempotent.
func (s *Server) Close() {
	s.stop()
	s.draining.Store(true)
	s.base.Close()
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
}

// Shutdown stops taking requests and waits for the ones in flight until
// ctx ends, then closes what is left: idle HTTP/1.1 connections close at
// once, busy ones after their response; HTTP/2 connections get GOAWAY.
func (s *Server) Shutdown(ctx context.Context) {
	s.draining.Store(true)
	_ = s.base.Shutdown(ctx)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.closeIdleH1() > 0 {
		select {
		case <-ctx.Done():
			s.Close()
			return
		case <-t.C:
		}
	}
	s.Close()
}

// closeIdleH1 closes the HTTP/1.1 connections waiting for a request and
// says how many are left.
func (s *Server) closeIdleH1() int {
	s.mu.Lock()
	var idle []*h1Conn
	for c := range s.h1conns {
		if c.idle.Load() {
			idle = append(idle, c)
		}
	}
	n := len(s.h1conns) - len(idle)
	s.mu.Unlock()
	for _, c := range idle {
		c.ec.Close()
	}
	return n
}

func (s *Server) addH1(c *h1Conn) {
	s.mu.Lock()
	s.h1conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) removeH1(c *h1Conn) {
	s.mu.Lock()
	delete(s.h1conns, c)
	s.mu.Unlock()
}

var h2Preface = []byte(http2.ClientPreface)

// ServeConn serves one connection until it ends: HTTP/2 when TLS
// negotiated h2 or the client sent the HTTP/2 preface (or the codec says
// so), else HTTP/1.1.
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
	ctx := downstream.With(s.ctx, ci)
	if !h2 {
		s.serveH1(ec, ctx)
		return
	}
	defer ec.Close()
	s.h2.ServeConn(ec, &http2.ServeConnOpts{Context: ctx, BaseConfig: s.base, Handler: s.handler})
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

// bufferedConn lets the codec sniff a connection's first bytes.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Peek(n int) ([]byte, error) { return b.r.Peek(n) }

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// edgeConn is a served connection; closing it untracks it.
type edgeConn struct {
	net.Conn
	ci        *downstream.ConnInfo
	s         *Server
	closeOnce sync.Once
}

func (c *edgeConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.s.untrack(c) })
	return err
}
