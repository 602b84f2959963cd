//go:build !linux

package listen

import (
	"net"
	"net/netip"
)

// originalDst needs Linux's SO_ORIGINAL_DST; elsewhere nothing is
// redirected.
func originalDst(net.Conn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
