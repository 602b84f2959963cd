// Package hello reads the server name and application protocols of a TLS
// ClientHello without consuming it: the TLS inspector of meridian-proxy's
// listeners. It is small and dependency-free so that it can be fuzzed
// quickly (FuzzParse).
package hello
