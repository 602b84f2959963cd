// Package testutil holds helpers shared by the project's tests: waiting for
// a condition instead of sleeping, and free loopback ports. Tests only.
package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
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
//
// It is drawn below the kernel's ephemeral range, never from it: a port
// from that range (what a ":0" bind hands out) may be given to any
// outgoing connection in the moment before the server binds it, and under
// a parallel test run one was ("bind: address already in use").
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := PickPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// PickPort is FreePort for harnesses without a testing.TB.
func PickPort() (int, error) {
	hi := ephemeralLow()
	for range 200 {
		port := lowestPort + rand.IntN(hi-lowestPort)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken: draw again
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d", lowestPort, hi-1)
}

// FreeAddr is FreePort as 127.0.0.1:port.
func FreeAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(FreePort(t)))
}

// lowestPort keeps clear of well-known and commonly configured ports.
const lowestPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > lowestPort+1000 {
				lo = v
			}
		}
	}
	return lo
}
