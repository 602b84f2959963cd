package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// h1Fixture serves handler with the HTTP/1.1 loop on a real loopback
// listener.
type h1Fixture struct {
	s    *Server
	addr string
	m    *telemetry.Metrics
}

func startH1(t testing.TB, handler http.Handler) *h1Fixture {
	t.Helper()
	m, err := telemetry.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	hcm := &xdsconfig.HTTPManager{Codec: xdsconfig.CodecHTTP1, MaxRequestHeadersBytes: 8 << 10, RequestHeadersTimeout: 2 * time.Second, IdleTimeout: time.Minute}
	h := NewHandler(hcm, Options{Listener: "l1", Telemetry: &telemetry.Telemetry{Metrics: m}})
	s := NewServer(h)
	s.handler = handler
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConn(c, &downstream.ConnInfo{Listener: "l1"})
		}
	}()
	t.Cleanup(func() { ln.Close(); s.Close() })
	return &h1Fixture{s: s, addr: ln.Addr().String(), m: m}
}

func (f *h1Fixture) rejected(reason string) float64 {
	return testutil.ToFloat64(f.m.Rejected.WithLabelValues("l1", reason))
}

// conn is a raw client connection with a reader for responses.
type conn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func (f *h1Fixture) dial(t *testing.T) *conn {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response to a request with method, and its body.
func (c *conn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection within 2 s.
func (c *conn) closed() bool { return c.closedWithin(2 * time.Second) }

func (c *conn) closedWithin(d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.r.ReadByte()
	return err != nil && !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout")
}

func TestH1Responses(t *testing.T) {
	big := strings.Repeat("b", 3000)
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			io.WriteString(w, "hello")
		case "/big":
			io.WriteString(w, big)
		case "/flushed":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
		case "/declared":
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
		case "/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			if _, err := io.WriteString(w, "x"); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic(fmt.Sprintf("a body on 204: %v", err))
			}
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(200)
			io.WriteString(w, "data")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		case "/early-hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "final")
		case "/small-trailers":
			// As ReverseProxy relays a short response with trailers: the
			// trailer's value is set before the handler returns.
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(200)
			io.WriteString(w, "data")
			w.Header().Set("X-Sum", "42")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	}))
	for _, tc := range []struct {
		name, method, path string
		wantBody           string
		wantLength         int64
		wantChunked        bool
		wantClose          bool
	}{
		{"a small body gets its length", "GET", "/small", "hello", 5, false, false},
		{"a large body is chunked", "GET", "/big", big, -1, true, false},
		{"a flushed body is chunked", "GET", "/flushed", "ab", -1, true, false},
		{"a declared length is kept", "GET", "/declared", "abc", 3, false, false},
		{"HEAD gets no body", "HEAD", "/big", "", -1, false, false},
		{"204 gets no body", "GET", "/nocontent", "", 0, false, false},
		{"trailers", "GET", "/trailers", "data", -1, true, false},
		{"trailers of a short body", "GET", "/small-trailers", "data", -1, true, false},
		{"1xx before the final status", "GET", "/early-hints", "final", 5, false, false},
		{"the handler closes", "GET", "/close", "bye", 3, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial(t)
			// Two requests pipelined: the second is answered too, unless
			// the first closes.
			req := tc.method + " " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n"
			c.send(req + req)
			resp, body := c.response(tc.method)
			if tc.path == "/early-hints" {
				if resp.StatusCode != http.StatusEarlyHints || resp.Header.Get("Link") == "" {
					t.Fatalf("status %d %v, want 103 with its Link first", resp.StatusCode, resp.Header)
				}
				if resp, body = c.response(tc.method); resp.Header.Get("Link") != "" {
					t.Errorf("the final response kept the 103's Link")
				}
			}
			if body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			if resp.ContentLength != tc.wantLength {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, tc.wantLength)
			}
			if chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"; chunked != tc.wantChunked {
				t.Errorf("chunked %v, want %v", chunked, tc.wantChunked)
			}
			if resp.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
			if strings.HasSuffix(tc.path, "trailers") {
				if resp.Header.Get("X-Sum") != "" {
					t.Error("the trailer was sent as a header")
				}
				if got := resp.Trailer.Get("X-Sum"); got != "42" {
					t.Errorf("declared trailer %q, want 42 (trailers %v)", got, resp.Trailer)
				}
				if got := resp.Trailer.Get("X-Late"); tc.path == "/trailers" && got != "late" {
					t.Errorf("undeclared trailer %q, want late (trailers %v)", got, resp.Trailer)
				}
			}
			if resp.Close != tc.wantClose {
				t.Errorf("Close %v, want %v", resp.Close, tc.wantClose)
			}
			if tc.wantClose {
				if !c.closed() {
					t.Error("the connection stayed open")
				}
				return
			}
			if tc.path == "/early-hints" {
				c.response(tc.method)
			}
			if _, body2 := c.response(tc.method); body2 != tc.wantBody {
				t.Errorf("second (pipelined) response body %q, want %q", body2, tc.wantBody)
			}
		})
	}
	t.Run("a response shorter than declared closes", func(t *testing.T) {
		c := f.dial(t)
		c.send("GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("read %q of 10 bytes with no error", b)
		}
	})
}

func TestH1Protocol(t *testing.T) {
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/ignore":
			io.WriteString(w, "ignored")
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Run("HTTP/1.0 closes unless kept alive", func(t *testing.T) {
		c := f.dial(t)
		c.send("GET / HTTP/1.0\r\n\r\n")
		if resp, body := c.response("GET"); body != "ok" || !resp.Close {
			t.Errorf("body %q close %v, want ok and close", body, resp.Close)
		}
		if !c.closed() {
			t.Error("the connection stayed open")
		}
		c = f.dial(t)
		c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
		if resp, _ := c.response("GET"); resp.Header.Get("Connection") != "keep-alive" {
			t.Errorf("Connection %q, want keep-alive", resp.Header.Get("Connection"))
		}
		if _, body := c.response("GET"); body != "ok" {
			t.Errorf("second body %q", body)
		}
	})
	t.Run("Connection: close", func(t *testing.T) {
		c := f.dial(t)
		c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp, _ := c.response("GET"); !resp.Close {
			t.Error("no Connection: close in the response")
		}
		if !c.closed() {
			t.Error("the connection stayed open")
		}
	})
	t.Run("bodies, chunked and by length", func(t *testing.T) {
		c := f.dial(t)
		c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		for _, want := range []string{"hello", "abcde"} {
			if _, body := c.response("POST"); body != want {
				t.Errorf("echo %q, want %q", body, want)
			}
		}
	})
	t.Run("100 Continue when the body is read", func(t *testing.T) {
		c := f.dial(t)
		c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		line, err := c.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("got %q, %v; want 100 Continue first", line, err)
		}
		c.r.ReadString('\n')
		c.send("body")
		if _, body := c.response("POST"); body != "body" {
			t.Errorf("echo %q", body)
		}
	})
	t.Run("no 100 Continue when the body is not read, and the connection closes", func(t *testing.T) {
		c := f.dial(t)
		c.send("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		if resp, body := c.response("POST"); resp.StatusCode != 200 || body != "ignored" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
		if !c.closed() {
			t.Error("the connection stayed open with a body never sent")
		}
	})
	t.Run("an unread small body is drained, a large one closes", func(t *testing.T) {
		c := f.dial(t)
		c.send("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.response("POST")
		if _, body := c.response("GET"); body != "ok" {
			t.Errorf("after a drained body: %q", body)
		}
		c = f.dial(t)
		n := maxPostHandlerRead + 10
		c.send(fmt.Sprintf("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n))
		go c.Write(make([]byte, n))
		c.response("POST")
		if !c.closed() {
			t.Error("the connection stayed open after a large unread body")
		}
	})
	t.Run("a panic closes its connection, and others are served", func(t *testing.T) {
		for _, path := range []string{"/panic", "/abort"} {
			c := f.dial(t)
			c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
			if !c.closed() {
				t.Errorf("%s: the connection stayed open", path)
			}
		}
		c := f.dial(t)
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.response("GET"); body != "ok" {
			t.Errorf("after panics: %q", body)
		}
	})
}

// TestH1Refusals: what the loop refuses is answered, counted by reason,
// and costs only its own connection.
func TestH1Refusals(t *testing.T) {
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for _, tc := range []struct {
		name, req, reason string
		code              int
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", "malformed", 400},
		{"malformed header", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", "malformed", 400},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", "malformed", 400},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "malformed", 400},
		{"unknown Expect", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", "malformed", 417},
		{"HTTP/2 through HTTP/1.1", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "malformed", 505},
		{"headers too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", "header_too_large", 431},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "malformed", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.rejected(tc.reason)
			c := f.dial(t)
			c.send(tc.req)
			resp, _ := c.response("GET")
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if !c.closed() {
				t.Error("the connection stayed open")
			}
			if got := f.rejected(tc.reason); got != before+1 {
				t.Errorf("rejections for %s: %v, want %v", tc.reason, got, before+1)
			}
		})
	}
	t.Run("a slow client is closed after the headers timeout and counted", func(t *testing.T) {
		before := f.rejected("header_timeout")
		c := f.dial(t)
		c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		if !c.closedWithin(4 * time.Second) { // the headers timeout is 2 s
			t.Error("the slow client was not closed")
		}
		if got := f.rejected("header_timeout"); got != before+1 {
			t.Errorf("header_timeout rejections: %v, want %v", got, before+1)
		}
	})
	c := f.dial(t)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response("GET"); body != "ok" {
		t.Errorf("a good request after the refusals: %q", body)
	}
}

// TestH1Watch: a long request's client going away cancels it; a client
// that sends its next request meanwhile (pipelining) loses nothing.
func TestH1Watch(t *testing.T) {
	watchAfter = 20 * time.Millisecond
	defer func() { watchAfter = time.Second }()
	cancelled := make(chan error, 1)
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-r.Context().Done():
				cancelled <- context.Cause(r.Context())
			case <-time.After(5 * time.Second):
				cancelled <- nil
			}
		case "/slow":
			time.Sleep(200 * time.Millisecond)
			io.WriteString(w, "slow")
		default:
			io.WriteString(w, "ok")
		}
	}))
	c := f.dial(t)
	c.send("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-cancelled:
		if !errors.Is(err, errClientGone) {
			t.Errorf("the hanging request ended with %v, want the client gone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hanging request was not cancelled")
	}

	c = f.dial(t)
	c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // the watch is reading by now
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c.response("GET"); body != "slow" {
		t.Errorf("first: %q", body)
	}
	if _, body := c.response("GET"); body != "ok" {
		t.Errorf("second, sent while the first ran: %q", body)
	}
}

// TestH1Shutdown: idle connections close at once, a busy one after its
// response.
func TestH1Shutdown(t *testing.T) {
	release := make(chan struct{})
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	idle := f.dial(t)
	idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.response("GET")
	busy := f.dial(t)
	busy.send("GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.s.Shutdown(ctx)
	}()
	if !idle.closed() {
		t.Error("the idle connection stayed open")
	}
	select {
	case <-done:
		t.Fatal("Shutdown returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := busy.response("GET")
	if body != "ok" || !resp.Close {
		t.Errorf("the busy request: %q, close %v; want ok and close", body, resp.Close)
	}
	<-done
}

// TestH1Hijack: an upgrade takes the connection over, with what was read
// ahead of it.
func TestH1Hijack(t *testing.T) {
	f := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	c := f.dial(t)
	c.send("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhi\n")
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	if line, _ := c.r.ReadString('\n'); line != "echo hi\n" {
		t.Errorf("after the upgrade: %q", line)
	}
}

// FuzzH1Conn: any bytes from a client get well-formed responses or a
// closed connection, never a panic or a hang, and the server keeps
// serving others.
func FuzzH1Conn(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD /big HTTP/1.0\r\n\r\n",
		"GET http://other/x?a=1;b=2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\xff\xff\xff",
	} {
		f.Add([]byte(seed))
	}
	big := strings.Repeat("b", 3000)
	fx := startH1(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/big":
			io.WriteString(w, big)
		default:
			io.WriteString(w, "ok")
		}
	}))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", fx.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		r := bufio.NewReader(c)
		for {
			if _, err := r.Peek(1); errors.Is(err, io.EOF) {
				break // the server closed, having answered all it read
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("the server neither answered nor closed within 5 s")
				}
				t.Fatalf("a malformed response: %v", err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("a response body hung: %v", err)
				}
			}
			resp.Body.Close()
		}
		// The server still serves.
		g := &http.Client{Timeout: 5 * time.Second}
		resp, err := g.Get("http://" + fx.addr + "/")
		if err != nil {
			t.Fatalf("after the fuzz input: %v", err)
		}
		resp.Body.Close()
	})
}
