// Package testutil holds helpers shared by the project's tests: waiting for
// a condition instead of sleeping, and free loopback ports. Tests only.
package testutil

import (
	"net"
	"testing"
	"time"
)

// Eventually calls cond until it returns nil or timeout passes, then fails
// the test with cond's last error. It polls every 10ms.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago, for
// servers that must be told their port before they start.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
