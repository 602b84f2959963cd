package httpproxy

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// HTTP/1.1 is served by this loop rather than net/http's Server. net/http
// watches every connection during every request with a goroutine of its own
// (a background read that cancels the request when the client goes), and
// ends each request by waking that goroutine and waiting for it: two
// goroutine hand-offs, a failed read and a per-request context for every
// request, about a tenth of a saturated sidecar's CPU. Here requests are
// read with net/http's parser (http.ReadRequest) and written by h1Response;
// a request still running after watchAfter gets the same watch, so a client
// that goes away still cancels its upstream request.
const (
	h1BufferSize = 4 << 10
	// bufferBeforeChunking is how much of a body without Content-Length is
	// held back: a response that ends within it gets a Content-Length.
	bufferBeforeChunking = 2 << 10
	// maxPostHandlerRead is how much of a body the handler left unread is
	// drained to keep the connection; beyond it the connection closes.
	maxPostHandlerRead = 256 << 10
)

// watchAfter is how long a request runs before its connection is watched;
// tests shorten it.
var watchAfter = time.Second

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1BufferSize) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1BufferSize) }}
	// aLongTimeAgo is a deadline in the past: it wakes a blocked read.
	aLongTimeAgo = time.Unix(1, 0)
)

// errClientGone cancels a request whose client closed its connection.
var errClientGone = errors.New("httpproxy: the client closed the connection")

// h1Conn is one HTTP/1.1 connection being served.
type h1Conn struct {
	s      *Server
	ec     *edgeConn
	tls    *tls.ConnectionState
	remote string
	ctx    context.Context
	cancel context.CancelCauseFunc
	br     *bufio.Reader
	bw     *bufio.Writer
	// limit bounds the bytes read for a request's headers.
	limit int64
	// idle is set while waiting for a request, for Shutdown.
	idle atomic.Bool

	// The watch of a long request (watchAfter): a one-byte read of the
	// connection while the request runs and its body has been read.
	watch    *time.Timer
	mu       sync.Mutex
	active   *h1Response
	watching bool
	watched  chan struct{}
	peeked   []byte // a byte the watch read (a pipelined request)
	hijacked bool   // the connection belongs to a handler
}

// Read is what the bufio.Reader reads: the byte the watch took first, then
// the connection, bounded by limit while headers are read.
func (c *h1Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	if c.limit <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.ec.Read(p)
	c.limit -= int64(n)
	return n, err
}

// serveH1 serves ec's requests one after the other until either side
// closes it.
func (s *Server) serveH1(ec *edgeConn, base context.Context) {
	c := &h1Conn{s: s, ec: ec, remote: ec.RemoteAddr().String()}
	if tc, ok := ec.Conn.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tls = &cs
	}
	c.ctx, c.cancel = context.WithCancelCause(base)
	defer c.cancel(nil)
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(ec)
	c.watch = time.AfterFunc(time.Hour, c.startWatch)
	c.watch.Stop()
	// reusable: the buffers go back to their pools only when no request
	// body can still be read through them. An upstream transport may read
	// a body after the handler returned (HTTP/2 writes bodies on a
	// goroutine of its own); a body read to its end never touches the
	// buffer again, one cut short might.
	reusable := true
	defer func() {
		c.watch.Stop()
		if c.hijacked {
			return
		}
		ec.Close()
		if !reusable {
			return
		}
		c.br.Reset(nil)
		h1Readers.Put(c.br)
		c.bw.Reset(nil)
		h1Writers.Put(c.bw)
	}()
	s.addH1(c)
	defer s.removeH1(c)
	for {
		req, ok := c.readRequest()
		if !ok {
			return
		}
		w := &h1Response{c: c, req: req, contentLength: -1}
		keep := c.serve(w, req)
		if w.hijacked {
			c.hijacked = true
			reusable = false
			return
		}
		keep = keep && w.finish()
		if w.body != nil {
			// Whoever still holds the body gets an error from now on.
			w.body.closed.Store(true)
			reusable = w.body.eof.Load()
		}
		if !keep || s.draining.Load() {
			return
		}
	}
}

// readRequest waits for a request (IdleTimeout), reads its headers
// (RequestHeadersTimeout, MaxRequestHeadersBytes) and checks them; what
// it refuses is answered, counted and ends the connection.
func (c *h1Conn) readRequest() (*http.Request, bool) {
	hcm := c.s.hcm
	c.idle.Store(true)
	if c.s.draining.Load() {
		return nil, false
	}
	if hcm.IdleTimeout > 0 {
		c.ec.SetReadDeadline(time.Now().Add(hcm.IdleTimeout))
	}
	// As net/http: the limit is on bytes read for the request line and
	// headers, with room for what the buffer reads ahead.
	c.limit = int64(cmp.Or(hcm.MaxRequestHeadersBytes, http.DefaultMaxHeaderBytes)) + h1BufferSize
	if _, err := c.br.Peek(1); err != nil {
		return nil, false // the client left, or idled out: not a refusal
	}
	c.idle.Store(false)
	if hcm.RequestHeadersTimeout > 0 {
		c.ec.SetReadDeadline(time.Now().Add(hcm.RequestHeadersTimeout))
	} else {
		c.ec.SetReadDeadline(time.Time{})
	}
	req, err := http.ReadRequest(c.br)
	hitLimit := c.limit <= 0
	c.limit = 1<<63 - 1
	c.ec.SetReadDeadline(time.Time{})
	if err != nil {
		var ne net.Error
		switch {
		case hitLimit:
			c.refuse("header_too_large", http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		case errors.As(err, &ne) && ne.Timeout():
			c.s.reject(c.ec.ci, "header_timeout")
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
			// A request cut short by its client: nothing to answer.
		default:
			c.refuse("malformed", http.StatusBadRequest, err.Error())
		}
		return nil, false
	}
	if msg, code := checkRequest(req); code != 0 {
		c.refuse("malformed", code, msg)
		return nil, false
	}
	req.RemoteAddr, req.TLS = c.remote, c.tls
	return req, true
}

// checkRequest is what net/http's server checks beyond parsing.
func checkRequest(req *http.Request) (string, int) {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version", http.StatusHTTPVersionNotSupported
	}
	// http.ReadRequest has moved the Host header to req.Host.
	switch {
	case req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect:
		return "missing required Host header", http.StatusBadRequest
	case req.Host != "" && !httpguts.ValidHostHeader(req.Host):
		return "malformed Host header", http.StatusBadRequest
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name", http.StatusBadRequest
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value", http.StatusBadRequest
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
		return "unsupported Expect header", http.StatusExpectationFailed
	}
	return "", 0
}

// refuse answers a request no handler will see, counts it and ends the
// connection.
func (c *h1Conn) refuse(reason string, code int, msg string) {
	c.s.reject(c.ec.ci, reason)
	c.ec.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(msg), msg)
	c.bw.Flush()
}

// serve runs the handler on one request; false ends the connection (a
// panic, an aborted response, a client gone).
func (c *h1Conn) serve(w *h1Response, req *http.Request) (keep bool) {
	if req.Body != http.NoBody {
		w.body = &h1Body{src: req.Body, w: w}
		w.body.expect.Store(strings.EqualFold(req.Header.Get("Expect"), "100-continue"))
		req.Body = w.body
	}
	c.mu.Lock()
	c.active = w
	c.mu.Unlock()
	c.watch.Reset(watchAfter)
	defer c.stopWatch()
	defer func() {
		if p := recover(); p != nil {
			keep = false
			if p != http.ErrAbortHandler && c.s.h.o.Logger != nil {
				c.s.h.o.Logger.Error("httpproxy: handler panic", "listener", c.ec.ci.Listener, "panic", fmt.Sprint(p))
			}
		}
	}()
	if c.s.handler == http.Handler(c.s.h) {
		c.s.h.serve(c.ctx, w, req) // no copy of the request for its context
	} else {
		c.s.handler.ServeHTTP(w, req.WithContext(c.ctx))
	}
	return c.ctx.Err() == nil
}

// startWatch runs when a request is still active after watchAfter: once
// its body has been read, a read of the connection tells whether the
// client went away (cancelling the request) or sent more (kept for the
// next request).
func (c *h1Conn) startWatch() {
	c.mu.Lock()
	w := c.active
	if w == nil || c.watching || (w.body != nil && !w.body.eof.Load()) {
		c.mu.Unlock()
		if w != nil {
			c.watch.Reset(watchAfter) // the body is still being read
		}
		return
	}
	c.watching, c.watched = true, make(chan struct{})
	c.mu.Unlock()
	defer close(c.watched)
	var b [1]byte
	n, err := c.ec.Conn.Read(b[:])
	if n == 1 {
		c.peeked = append(c.peeked[:0], b[0])
		return
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.cancel(errClientGone)
	}
}

// stopWatch ends a request's watch, waking its read.
func (c *h1Conn) stopWatch() {
	c.watch.Stop()
	c.mu.Lock()
	c.active = nil
	watching := c.watching
	c.watching = false
	c.mu.Unlock()
	if watching {
		c.ec.SetReadDeadline(aLongTimeAgo)
		<-c.watched
		c.ec.SetReadDeadline(time.Time{})
	}
}

// h1Body is a request body. It notes when the body is done; it sends
// "100 Continue" when the handler first reads the body of a request that
// asked for it; and Close does not read what is left (net/http's body
// would read all of it), the server drains a bounded amount after the
// handler instead.
type h1Body struct {
	src    io.ReadCloser
	w      *h1Response
	expect atomic.Bool // the client waits for 100 Continue
	eof    atomic.Bool
	closed atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.expect.Load() {
		b.w.sendContinue()
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.closed.Store(true)
	return nil
}

// drain reads what the handler left of the body, up to
// maxPostHandlerRead; false when the rest cannot be skipped.
func (b *h1Body) drain() bool {
	if b.eof.Load() {
		return true
	}
	if b.expect.Load() {
		return false // the client has not sent it
	}
	n, err := io.CopyN(io.Discard, b.src, maxPostHandlerRead+1)
	return n <= maxPostHandlerRead && err == io.EOF
}

// h1Response is the http.ResponseWriter of one request.
type h1Response struct {
	c             *h1Conn
	req           *http.Request
	header        http.Header
	status        int
	committed     bool // status line and headers written
	chunked       bool
	closeAfter    bool
	contentLength int64 // declared, or -1
	written       int64
	pending       []byte // body held back before committing
	trailers      []string
	hijacked      bool
	err           error
	body          *h1Body // nil without one
	// mu orders a "100 Continue" written from a body read (which may be
	// another goroutine's, an upstream transport's) with the response.
	mu sync.Mutex
}

// sendContinue writes "100 Continue" unless the response has started.
func (w *h1Response) sendContinue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.body.expect.Swap(false) && !w.committed {
		io.WriteString(w.c.bw, "HTTP/1.1 100 Continue\r\n\r\n")
		w.c.bw.Flush()
	}
}

func (w *h1Response) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}

// adoptHeader takes h as the response's header map when none has been
// set: forward hands over the upstream response's, which is its own,
// instead of copying it into a map made for each response.
func (w *h1Response) adoptHeader(h http.Header) bool {
	if len(w.header) > 0 || w.status != 0 {
		return false
	}
	w.header = h
	return true
}

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("httpproxy: invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once, the final status still to come.
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.body != nil && code == http.StatusContinue {
			w.body.expect.Store(false)
		}
		writeStatusLine(w.c.bw, code)
		w.header.Write(w.c.bw)
		w.c.bw.WriteString("\r\n")
		w.err = w.c.bw.Flush()
		return
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// bodyAllowed reports whether the status may carry a body (RFC 9110).
func bodyAllowed(code int) bool {
	return code != http.StatusNoContent && code != http.StatusNotModified && (code < 100 || code > 199)
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.contentLength < 0 && len(w.pending)+len(p) <= bufferBeforeChunking {
			w.pending = append(w.pending, p...)
			return len(p), nil
		}
		w.commit(false)
	}
	w.writeBody(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *h1Response) writeBody(p []byte) {
	if len(p) == 0 || w.err != nil {
		return
	}
	if w.chunked {
		w.c.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.c.bw.WriteString("\r\n")
		w.c.bw.Write(p)
		_, w.err = w.c.bw.WriteString("\r\n")
		return
	}
	_, w.err = w.c.bw.Write(p)
}

// commit writes the status line and headers. At the end of the handler
// (done) a body held back has its length known.
func (w *h1Response) commit(done bool) {
	w.mu.Lock()
	w.committed = true
	w.mu.Unlock()
	h, bw := w.Header(), w.c.bw
	// Trailers: the names the Trailer header declares, sent with their
	// values at the end, and any name set with http.TrailerPrefix.
	var exclude map[string]bool
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = map[string]bool{}
			}
			exclude[k] = true
		}
	}
	for _, v := range h["Trailer"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				k := http.CanonicalHeaderKey(f)
				w.trailers = append(w.trailers, k)
				if exclude == nil {
					exclude = map[string]bool{}
				}
				exclude[k] = true // its value may be set already: it goes last
			}
		}
	}
	if w.req.Close || w.c.s.draining.Load() || httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	hasBody := bodyAllowed(w.status) && w.req.Method != http.MethodHead
	switch {
	case w.contentLength >= 0 || !hasBody:
	case done && len(w.trailers) == 0:
		w.contentLength = int64(len(w.pending))
		h["Content-Length"] = []string{strconv.Itoa(len(w.pending))}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h.Del("Content-Length")
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	writeStatusLine(bw, w.status)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		h.Del("Connection")
		bw.WriteString("Connection: close\r\n")
	} else if !w.req.ProtoAtLeast(1, 1) {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	h.Del("Transfer-Encoding")
	w.err = h.WriteSubset(bw, exclude)
	bw.WriteString("\r\n")
	if len(w.pending) > 0 {
		p := w.pending
		w.pending = nil
		w.writeBody(p)
	}
}

// writeStatusLine writes "HTTP/1.1 code reason" (without fmt: it is on
// every response).
func writeStatusLine(bw *bufio.Writer, code int) {
	var b [20]byte
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	bw.WriteByte(' ')
	if t := http.StatusText(code); t != "" {
		bw.WriteString(t)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// finish completes the response after the handler returned; true keeps
// the connection for the next request.
func (w *h1Response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	if w.chunked && w.err == nil {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		trailer := http.Header{}
		for _, k := range w.trailers {
			if vv := w.header[k]; len(vv) > 0 {
				trailer[k] = vv
			}
		}
		for k, vv := range w.header {
			if tk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				trailer[http.CanonicalHeaderKey(tk)] = vv
			}
		}
		trailer.Write(bw)
		bw.WriteString("\r\n")
	}
	if err := w.c.bw.Flush(); err != nil || w.err != nil {
		return false
	}
	if w.contentLength >= 0 && w.written < w.contentLength && w.req.Method != http.MethodHead && bodyAllowed(w.status) {
		return false // the handler wrote less than it declared
	}
	if w.closeAfter {
		return false
	}
	// What the handler left of the request body: drained to keep the
	// connection, unless the client still waits for 100 Continue.
	return w.body == nil || w.body.drain()
}

// Flush implements http.Flusher: what is written so far goes out now.
func (w *h1Response) Flush() { w.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (w *h1Response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	if w.err != nil {
		return w.err
	}
	w.err = w.c.bw.Flush()
	return w.err
}

// Hijack implements http.Hijacker (protocol upgrades): the connection,
// with what was read ahead of it, belongs to the caller.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.committed {
		return nil, nil, errors.New("httpproxy: hijack after the response started")
	}
	w.c.stopWatch()
	w.hijacked = true
	w.c.ec.SetDeadline(time.Time{})
	return w.c.ec, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// SetReadDeadline and SetWriteDeadline are for http.ResponseController.
func (w *h1Response) SetReadDeadline(t time.Time) error  { return w.c.ec.SetReadDeadline(t) }
func (w *h1Response) SetWriteDeadline(t time.Time) error { return w.c.ec.SetWriteDeadline(t) }

// EnableFullDuplex is for http.ResponseController: this server lets a
// handler read the body while it writes.
func (w *h1Response) EnableFullDuplex() error { return nil }

// httpDate is the Date header's value, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.unix == now {
		return d.text
	}
	d := &dateText{unix: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	unix int64
	text string
}

var cachedDate atomic.Pointer[dateText]
