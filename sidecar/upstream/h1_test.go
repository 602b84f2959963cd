package upstream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/upstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// scripted is an HTTP/1.1 server that answers by path with raw bytes.
type scripted struct {
	addr     string
	accepted atomic.Int64
	written  chan string // paths whose request was read
}

func startScripted(t *testing.T) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{addr: ln.Addr().String(), written: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go s.serve(c)
		}
	}()
	return s
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s.written <- req.URL.Path
		switch req.URL.Path {
		case "/continue":
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		case "/big-header":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("x", 2<<20)+"\r\nContent-Length: 0\r\n\r\n")
		case "/hang":
			time.Sleep(10 * time.Second) // until the client gives up and the test ends
			return
		case "/long":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("y", 100000))
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

func newPlainCluster(t *testing.T) *upstream.Cluster {
	t.Helper()
	return upstream.New(&xdsconfig.Cluster{Name: "c", ConnectTimeout: 5 * time.Second, PanicThreshold: 50, Breakers: xdsconfig.DefaultBreakers,
		ChoiceCount: 2, IdleTimeout: time.Hour}, upstream.Deps{Resolver: upstream.NewResolver()})
}

func send(t *testing.T, c *upstream.Cluster, ctx context.Context, addr, path string) (string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x"+path, nil)
	resp, err := c.RoundTrip(req, &lb.Host{Addr: addr}, false)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b), err
}

// TestPlainHTTP1: plaintext HTTP/1.1 on pooled connections — reused once
// a response was read to its end, informational responses skipped, an
// oversized response header refused, a cancelled request ended at once
// with its context's error, a body closed early not leaving its
// connection in the pool.
func TestPlainHTTP1(t *testing.T) {
	s := startScripted(t)
	c := newPlainCluster(t)
	ctx := context.Background()
	for _, path := range []string{"/a", "/continue", "/b"} {
		if got, err := send(t, c, ctx, s.addr, path); err != nil || got != "200 ok" {
			t.Fatalf("%s: %q %v", path, got, err)
		}
		<-s.written
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for three requests in a row, want 1", n)
	}
	if _, err := send(t, c, ctx, s.addr, "/big-header"); err == nil || !strings.Contains(err.Error(), "header too large") {
		t.Fatalf("oversized response header: %v", err)
	}
	<-s.written

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := send(t, c, cctx, s.addr, "/hang"); done <- err }()
	<-s.written
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request still waits for its answer")
	}

	before := s.accepted.Load()
	req, _ := http.NewRequest("GET", "http://x/long", nil)
	resp, err := c.RoundTrip(req, &lb.Host{Addr: s.addr}, false)
	if err != nil {
		t.Fatal(err)
	}
	<-s.written
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); err == nil || err == io.EOF {
		t.Fatalf("read after close: %v", err)
	}
	if got, err := send(t, c, ctx, s.addr, "/a"); err != nil || got != "200 ok" {
		t.Fatalf("after an early close: %q %v", got, err)
	}
	<-s.written
	if n := s.accepted.Load() - before; n != 2 {
		t.Fatalf("%d new connections, want 2: a body closed early must not give its connection back", n)
	}
}

// TestPlainHTTP1IdleTimeout: a pooled connection idle beyond the cluster's
// idle timeout is closed, with no further request to notice it.
func TestPlainHTTP1IdleTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if _, err := br.ReadByte(); err != nil { // the proxy closing the idle connection
			close(closed)
		}
	}()
	c := upstream.New(&xdsconfig.Cluster{Name: "c", ConnectTimeout: 5 * time.Second, PanicThreshold: 50, Breakers: xdsconfig.DefaultBreakers,
		ChoiceCount: 2, IdleTimeout: 50 * time.Millisecond}, upstream.Deps{Resolver: upstream.NewResolver()})
	if got, err := send(t, c, context.Background(), ln.Addr().String(), "/"); err != nil || got != "200 ok" {
		t.Fatalf("%q %v", got, err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed after the idle timeout")
	}
}
