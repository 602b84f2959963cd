package downstream

import (
	"context"
	"net/netip"
)

// Direction says which side of the workload a listener serves; it sets
// the metrics' reporter and how peer labels are exchanged.
type Direction uint8

// Directions.
const (
	// Outbound: the local application's traffic to the mesh.
	Outbound Direction = iota
	// Inbound: the mesh's traffic to the local application.
	Inbound
	// Gateway: traffic entering or leaving the mesh through a gateway.
	Gateway
)

// Reporter is the metrics' reporter label for the direction, as Istio's.
func (d Direction) Reporter() string {
	switch d {
	case Inbound:
		return "destination"
	case Gateway:
		return "gateway"
	}
	return "source"
}

// ConnInfo describes one downstream connection. Immutable once the
// listener layer hands the connection on.
type ConnInfo struct {
	Listener  string
	Direction Direction
	Source    netip.AddrPort
	// Dest is the connection's original destination (SO_ORIGINAL_DST
	// under iptables redirection, else the address it was accepted on or
	// the one its explicit port maps to).
	Dest netip.AddrPort
	// PeerID is the client's SPIFFE ID from mTLS; empty for plaintext.
	// PeerSubject is its certificate's subject (RFC 2253).
	PeerID      string
	PeerSubject string
	// SNI the client asked for in its ClientHello.
	SNI string
	// Authority, when set, replaces the Host of every request (explicit
	// upstream ports and CONNECT tunnels, whose applications address
	// 127.0.0.1).
	Authority string
}

type key struct{}

// With returns a context carrying the connection's description.
func With(ctx context.Context, ci *ConnInfo) context.Context {
	return context.WithValue(ctx, key{}, ci)
}

// From returns the description a context carries, or an empty one.
func From(ctx context.Context) *ConnInfo {
	if ci, ok := ctx.Value(key{}).(*ConnInfo); ok {
		return ci
	}
	return &ConnInfo{}
}
