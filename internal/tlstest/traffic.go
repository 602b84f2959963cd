package tlstest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
)

// EchoServer accepts TLS connections with cfg and echoes one byte on each,
// until the test ends. It returns the address.
func EchoServer(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				var b [1]byte
				if _, err := io.ReadFull(conn, b[:]); err == nil {
					conn.Write(b[:])
				}
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}

// RoundTrip makes a new TLS connection with cfg (a full handshake) and
// exchanges one byte with an EchoServer.
func RoundTrip(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	_, err = io.ReadFull(conn, make([]byte, 1))
	return err
}

// Traffic runs RoundTrips without pause from several workers and counts
// them: the load under which rotations must not fail a request.
type Traffic struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

// StartTraffic starts workers doing RoundTrips to addr with cfg; Stop ends
// them (and the test's end does, if Stop was not called).
func StartTraffic(t testing.TB, addr string, cfg *tls.Config, workers int) *Traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &Traffic{stop: cancel}
	for range workers {
		tr.wg.Go(func() {
			for ctx.Err() == nil {
				if err := RoundTrip(addr, cfg); err != nil {
					tr.failed.Add(1)
					tr.lastErr.Store(err)
				} else {
					tr.ok.Add(1)
				}
			}
		})
	}
	t.Cleanup(tr.Stop)
	return tr
}

// WaitMore waits until n more requests have succeeded.
func (tr *Traffic) WaitMore(t testing.TB, n int64) {
	t.Helper()
	target := tr.ok.Load() + n
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := tr.ok.Load(); got < target {
			return fmt.Errorf("%d requests succeeded, waiting for %d (%d failed)", got, target, tr.failed.Load())
		}
		return nil
	})
}

// Stop ends the traffic and waits for the workers.
func (tr *Traffic) Stop() { tr.stop(); tr.wg.Wait() }

// Counts returns the successful and failed requests, and the last failure.
func (tr *Traffic) Counts() (ok, failed int64, last any) {
	return tr.ok.Load(), tr.failed.Load(), tr.lastErr.Load()
}
