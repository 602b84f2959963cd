// Command xdsbench measures Meridian's xDS server beside the naive
// baseline — go-control-plane's SnapshotCache with one full snapshot per
// node, rebuilt on every change — in the same run: N Envoy-like ADS
// clients (sidecars in three zones, each on its own connection, in a
// child process so that the server's CPU is measured alone) against a
// registry of S services with E endpoints each, over loopback.
//
// It reports the initial sync of every client (wall time and server CPU),
// the time from one endpoint change until each client has ACKed it (p50,
// p99, and until all have), server CPU per push, and peak RSS, and prints
// baseline/meridian ratios. bench/xds.sh runs it.
//
//	xdsbench [-services 1000] [-endpoints 10] [-clients 1000] [-changes 20] [-baseline-changes 3]
//	xdsbench -run meridian|baseline ...   one implementation, JSON on stdout
//	xdsbench -client-process ADDR -n N     the client process
//
// It must not be imported: it is a program, and its kube_test.go uses the
// test-only kube-apiserver harness.
package main
