package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Pool sends plaintext HTTP/1.1 requests on pooled connections from the
// calling goroutine: the request is written and the response read where
// the proxy's handler runs, instead of handing each over to net/http
// Transport's per-connection read and write goroutines and back. On a
// one-core sidecar those hand-offs, their channels and the per-request
// cancellation plumbing cost as much as the parsing; HAProxy and Envoy do
// the same work in one event loop.
//
// It serves what it can do exactly: HTTP/1.1 in plaintext or TLS, no
// protocol upgrade, a request body held in memory (replayable) or none.
// Streams, upgrades and HTTP/2 go through net/http's transports.
type h1Pool struct {
	dial        func(ctx context.Context, addr string) (net.Conn, error)
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by host address, most recently used last
	closed bool
	// reaper closes connections idle beyond idleTimeout, also those to
	// hosts no longer asked for; armed while any connection is idle.
	reaper *time.Timer
}

// maxIdlePerHost bounds the idle connections kept per host, as
// MaxIdleConnsPerHost does for the transport.
const maxIdlePerHost = 256

// maxResponseHeaderBytes bounds a response's header, as the transport's
// MaxResponseHeaderBytes.
const maxResponseHeaderBytes = 1 << 20

type h1Conn struct {
	conn   net.Conn
	lr     limitedReader
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time
	// tls is the handshake's state, for responses (peer identity).
	tls *tls.ConnectionState
}

// limitedReader is io.LimitedReader with a limit that can be lifted.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("upstream: response header too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, error), idleTimeout time.Duration) *h1Pool {
	return &h1Pool{dial: dial, idleTimeout: idleTimeout, idle: map[string][]*h1Conn{}}
}

// get returns an idle connection to addr, nil when there is none.
func (p *h1Pool) get(addr string) *h1Conn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		list := p.idle[addr]
		if len(list) == 0 {
			return nil
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[addr] = list[:len(list)-1]
		if p.idleTimeout > 0 && now.Sub(pc.idleAt) > p.idleTimeout {
			pc.conn.Close()
			continue
		}
		return pc
	}
}

func (p *h1Pool) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[pc.addr]) >= maxIdlePerHost {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	p.idle[pc.addr] = append(p.idle[pc.addr], pc)
	if p.reaper == nil && p.idleTimeout > 0 {
		p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
	}
	p.mu.Unlock()
}

// reap closes the connections idle beyond idleTimeout and runs again
// while any stay idle.
func (p *h1Pool) reap() {
	now := time.Now()
	var expired []*h1Conn
	p.mu.Lock()
	p.reaper = nil
	for addr, list := range p.idle {
		kept := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleAt) > p.idleTimeout {
				expired = append(expired, pc)
			} else {
				kept = append(kept, pc)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, addr)
		} else {
			p.idle[addr] = kept
		}
	}
	if len(p.idle) > 0 && !p.closed {
		p.reaper = time.AfterFunc(p.idleTimeout, p.reap)
	}
	p.mu.Unlock()
	for _, pc := range expired {
		pc.conn.Close()
	}
}

// closeIdle closes the idle connections; closing makes it refuse to keep
// any more (the transports were replaced).
func (p *h1Pool) closeIdle(closing bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*h1Conn{}
	p.closed = p.closed || closing
	p.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.conn.Close()
		}
	}
}

// longAgo is a deadline in the past: it unblocks a connection's I/O.
var longAgo = time.Unix(1, 0)

// roundTrip sends req to addr and reports whether it went out on a reused
// connection. The response body must be read to its end or closed.
func (p *h1Pool) roundTrip(req *http.Request, addr string) (*http.Response, bool, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	pc := p.get(addr)
	reused := pc != nil
	if pc == nil {
		conn, err := p.dial(ctx, addr)
		if err != nil {
			return nil, false, err
		}
		pc = &h1Conn{conn: conn, addr: addr, lr: limitedReader{r: conn, n: math.MaxInt64}}
		if tc, ok := conn.(*tls.Conn); ok {
			cs := tc.ConnectionState()
			if cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != "http/1.1" {
				conn.Close()
				return nil, false, &ConnectError{Addr: addr, Err: fmt.Errorf("the server chose %q over HTTP/1.1", cs.NegotiatedProtocol)}
			}
			pc.tls = &cs
		}
		pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
		pc.bw = bufio.NewWriterSize(conn, 4<<10)
	}
	// Cancellation (the client gone, a timeout) unblocks the connection,
	// which is then closed; no goroutine waits for it meanwhile.
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(longAgo) })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		pc.conn.Close()
		if ctx.Err() != nil {
			return nil, reused, ctx.Err()
		}
		return nil, reused, err
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err)
	}
	pc.lr.n = maxResponseHeaderBytes
	resp, err := http.ReadResponse(pc.br, req)
	// Informational answers (100 Continue, 103 Early Hints) precede the
	// real one; upgrades are not sent this way.
	for i := 0; err == nil && resp.StatusCode < 200 && i < 8; i++ {
		resp, err = http.ReadResponse(pc.br, req)
	}
	pc.lr.n = math.MaxInt64
	if err == nil && resp.StatusCode < 200 {
		err = errors.New("upstream: too many informational responses")
	}
	if err != nil {
		return fail(err)
	}
	resp.TLS = pc.tls
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		if keep && stop() {
			p.put(pc)
		} else {
			stop()
			pc.conn.Close()
		}
		return resp, reused, nil
	}
	resp.Body = &h1Body{rc: resp.Body, pc: pc, p: p, stop: stop, keep: keep}
	return resp, reused, nil
}

// h1Body returns its connection to the pool when read to its end, and
// closes it when closed before.
type h1Body struct {
	rc   io.ReadCloser
	pc   *h1Conn
	p    *h1Pool
	stop func() bool
	keep bool
	done bool
	eof  bool
}

var errBodyClosed = errors.New("upstream: read on a closed response body")

func (b *h1Body) Read(p []byte) (int, error) {
	switch {
	case b.eof:
		return 0, io.EOF
	case b.done:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.finish(true)
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(eof bool) {
	if b.done {
		return
	}
	b.done = true
	if eof && b.keep && b.stop() {
		b.p.put(b.pc)
		return
	}
	b.stop()
	b.pc.conn.Close()
}
