// Package listen owns meridian-proxy's sockets: it binds the listeners of
// the configuration (and the explicit ports of a sidecar without traffic
// capture), accepts connections, finds each one's listener and filter
// chain as Envoy does, terminates TLS where the chain says so, and hands
// the connection to the HTTP or TCP proxy.
//
//	accept ─► limits ─► original destination (SO_ORIGINAL_DST under iptables
//	          REDIRECT, or the explicit port's destination) ─► hand-off to the
//	          listener bound to it (use_original_dst) ─► listener filters (TLS
//	          inspector: SNI, ALPN; HTTP inspector) ─► filter chain match ─►
//	          TLS termination (SDS certificates, SPIFFE peer check) ─► network
//	          RBAC ─► httpproxy.Server | tcpproxy.Proxy
//
// Listener updates are applied without dropping connections: a socket
// whose address stays keeps accepting, new connections use the new chains,
// and connections already open finish on the chains they started with
// (drained for up to DrainTime, then closed).
//
// Bad input at this layer — connection floods beyond MaxConnections, TLS
// garbage, ClientHellos that do not parse, handshakes that fail or stall,
// connections that match no chain — costs only the connection it came on,
// and is counted in meridian_proxy_downstream_rejected_total by reason.
package listen
