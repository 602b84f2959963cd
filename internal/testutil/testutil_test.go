package testutil

import (
	"net"
	"testing"
)

// TestFreePort: the port is below the ephemeral range (where connections
// and ":0" binds get theirs), and a server can bind it.
func TestFreePort(t *testing.T) {
	hi := ephemeralLow()
	for range 20 {
		port := FreePort(t)
		if port < lowestPort || port >= hi {
			t.Fatalf("port %d outside %d-%d", port, lowestPort, hi-1)
		}
		l, err := net.Listen("tcp", FreeAddr(t).String())
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
}
