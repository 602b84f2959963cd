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
//
// # Notes from profiling (1,000 clients, one change, 2 shared cores)
//
// CPU profile of the server during the change phase (-run meridian
// -cpuprofile): with go-control-plane's state-of-the-world server, a
// quarter of the CPU was rebuilding each stream's subscription map from
// the thousand names every ACK repeats, a sixth copying a thousand
// returned versions per push, and another quarter decoding the ACKs.
// xds/server now runs its own state-of-the-world loop that keeps a
// subscription an ACK repeats, and records versions in place (with an
// undo for a response dropped unsent): server CPU per push went from
// 0.43-0.49 s to 0.24-0.29 s in back-to-back runs, and the Kubernetes
// path's state-of-the-world p99 from 639-1384 ms to 353-622 ms (three
// alternating runs each, load average 2-4). What remains per ACK is gRPC
// decoding the thousand names (~40% of the server's CPU per change) and,
// on this one machine, the client process encoding them; delta clients
// send none and stay near 60-80 ms after discovery's batch window.
//
// The batch window of Kubernetes discovery was the largest single term for
// delta clients: BenchmarkKubePath measured p99 218 ms at 100 ms and
// 107 ms at 20 ms in one run, so the default is now 20 ms (the xDS
// server's own window coalesces bursts); it still measures both.
package main
