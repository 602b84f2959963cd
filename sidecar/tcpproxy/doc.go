// Package tcpproxy is meridian-proxy's tcp_proxy filter: it picks a
// cluster (or one of weighted clusters) and an endpoint, connects (with
// TLS when the cluster says so, trying other endpoints on connect failure
// up to max_connect_attempts), and copies bytes both ways until both sides
// are done or the connection idles out. Half-closes are passed on, so
// protocols that close their sending side first keep working.
//
// The east-west gateway uses it for TLS passthrough: the client's mTLS
// session goes through untouched to the endpoint chosen by SNI.
package tcpproxy
