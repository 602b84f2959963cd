package listen

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// originalDst returns the destination a connection had before iptables
// redirected it (SO_ORIGINAL_DST), and false when it was not redirected.
func originalDst(c net.Conn) (netip.AddrPort, bool) {
	tc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	var out netip.AddrPort
	var found bool
	raw.Control(func(fd uintptr) {
		local, _ := netip.ParseAddrPort(c.LocalAddr().String())
		if local.Addr().Unmap().Is4() {
			// struct sockaddr_in, read through a struct of the right size.
			mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				return
			}
			b := mreq.Multiaddr
			ip := netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
			out, found = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[2:4])), true
			return
		}
		// struct sockaddr_in6 (28 bytes), read through IPv6MTUInfo (32).
		info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, unix.SO_ORIGINAL_DST)
		if err != nil {
			return
		}
		sa := info.Addr
		ip := netip.AddrFrom16(sa.Addr)
		var pb [2]byte // the port is in network order
		binary.NativeEndian.PutUint16(pb[:], sa.Port)
		out, found = netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(pb[:])), true
	})
	return out, found
}
