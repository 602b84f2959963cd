//go:build linux

package sockio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// pair returns a wrapped connection and the plain peer it is connected to.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); peer.Close() })
	return w, peer
}

func TestWrapOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe unchanged", got)
	}
}

// TestStream sends more than the socket buffers hold both ways at once,
// so writes meet a full buffer and wait in the poller, and reads meet an
// empty one.
func TestStream(t *testing.T) {
	c, peer := pair(t)
	const size = 16 << 20
	out := make([]byte, size)
	rand.Read(out)
	back := make([]byte, size)
	rand.Read(back)

	var wg sync.WaitGroup
	var gotByPeer, gotByConn []byte
	var errs [4]error
	wg.Add(4)
	go func() { defer wg.Done(); _, errs[0] = c.Write(out); c.CloseWrite() }()
	go func() { defer wg.Done(); gotByPeer, errs[1] = io.ReadAll(peer) }()
	go func() {
		defer wg.Done()
		_, errs[2] = peer.Write(back)
		peer.(*net.TCPConn).CloseWrite()
	}()
	go func() {
		defer wg.Done()
		// Small reads, so many of them find the buffer empty.
		buf := make([]byte, 1000)
		for {
			n, err := c.Read(buf)
			gotByConn = append(gotByConn, buf[:n]...)
			if err == io.EOF {
				return
			}
			if err != nil {
				errs[3] = err
				return
			}
		}
	}()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotByPeer, out) {
		t.Errorf("the peer got %d bytes, not the %d written", len(gotByPeer), size)
	}
	if !bytes.Equal(gotByConn, back) {
		t.Errorf("the wrapped conn read %d bytes, not the %d sent", len(gotByConn), size)
	}
}

func TestErrors(t *testing.T) {
	t.Run("zero-length read", func(t *testing.T) {
		c, _ := pair(t)
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		c, _ := pair(t)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline = %v; want a timeout", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("error %#v; want a *net.OpError for op read", err)
		}
	})
	t.Run("write deadline on a full buffer", func(t *testing.T) {
		c, peer := pair(t) // the peer reads one byte, then nothing
		type result struct {
			n   int
			err error
		}
		res := make(chan result, 1)
		go func() {
			n, err := c.Write(make([]byte, 64<<20))
			res <- result{n, err}
		}()
		// Once a byte has arrived the write is under way; the deadline
		// then stops it in the poller, with what the buffers took.
		if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		c.SetWriteDeadline(time.Now())
		select {
		case r := <-res:
			if !errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("Write = %d, %v; want a timeout", r.n, r.err)
			}
			if r.n <= 0 || r.n >= 64<<20 {
				t.Fatalf("Write reported %d bytes written; want what the buffers took", r.n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the deadline did not stop a write waiting for room")
		}
	})
	t.Run("end of stream", func(t *testing.T) {
		c, peer := pair(t)
		peer.Write([]byte("last"))
		peer.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "last" {
			t.Fatalf("ReadAll = %q, %v; want \"last\", nil", got, err)
		}
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end = %d, %v; want 0, EOF", n, err)
		}
	})
	t.Run("reset by peer", func(t *testing.T) {
		c, peer := pair(t)
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close()
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = c.Write([]byte("x"))
			time.Sleep(time.Millisecond)
		}
		var oe *net.OpError
		var se *os.SyscallError
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.As(err, &se) {
			t.Fatalf("Write to a reset connection = %#v; want *net.OpError wrapping *os.SyscallError", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, _ := pair(t)
		c.Close()
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v; want net.ErrClosed", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close = %v; want net.ErrClosed", err)
		}
	})
	t.Run("close unblocks a read", func(t *testing.T) {
		c, _ := pair(t)
		done := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
		time.Sleep(20 * time.Millisecond)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked Read after Close = %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a waiting Read")
		}
	})
}

// TestConcurrentReaders: many goroutines reading one connection each get
// whole bytes, none lost or doubled.
func TestConcurrentReaders(t *testing.T) {
	c, peer := pair(t)
	const size = 1 << 20
	go func() {
		peer.Write(bytes.Repeat([]byte{1}, size))
		peer.Close()
	}()
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 777)
			for {
				n, err := c.Read(buf)
				for _, b := range buf[:n] {
					if b != 1 {
						t.Error("read a byte that was never sent")
						return
					}
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if total != size {
		t.Fatalf("readers got %d bytes in all; want %d", total, size)
	}
}
