// Package cptest starts real xDS servers on loopback for meridian-proxy's
// tests: Meridian's own (xds/server over a registry), which every feature
// test goes through, and go-control-plane's snapshot cache server, for
// what Meridian's server never sends: a server without delta, resources
// to be NACKed, and edge listeners with limits tightened for the test.
// Tests and benches only.
package cptest
