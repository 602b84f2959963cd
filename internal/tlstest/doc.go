// Package tlstest is TLS traffic for tests: an echo server and workers
// that make a new connection — a full handshake — per request and count
// what failed, so that a test can assert that not one handshake failed
// while certificates and roots change underneath (root rotation in
// package trust and across meridiands).
//
// The package is for tests only and must not be imported by production
// code.
package tlstest
