// Package gcpace owns meridian-proxy's garbage-collector pacing. GOGC is one
// setting per process, so this package is its only writer in the proxy:
//
//   - a heap floor (Run): the collector is not started before the heap
//     reaches the floor, however small the live heap is. With GOGC alone a
//     proxy holding a small configuration (4 MB live) collects every 4 MB
//     allocated: at 1,000 req/s that is a collection per sidecar every
//     0.6 s, and each one's mark phase (3 ms on one core) is where the
//     slowest percentile of requests waits; at saturation the collector
//     took 8% of the proxy's CPU. With a 16 MiB floor it collects a third as
//     often. A large configuration's heap goal (GOGC times its live heap)
//     is above the floor already and is left as it is, so the floor does
//     not raise what a proxy with many clusters keeps resident.
//   - a harder pace while a large xDS push is decoded (Hold): the collector
//     runs at GOGC=20, so each resource's decoding garbage is reclaimed and
//     its room reused by the next, instead of the proxy's configuration
//     being spread over twice its heap.
//
// The operator's GOGC is the base: the floor only raises it, Hold only
// lowers it, GOGC=off stays off, and a GOMEMLIMIT still caps the heap
// (the runtime takes the lower of the two goals).
//
// Run polls the live heap (runtime/metrics, as marked by the last
// collection) rather than hooking each collection: a second's delay in
// following the live heap costs nothing, and a poller has an owner and a
// context, as every goroutine here must.
//
// What it must not do: decide anything about configuration or traffic, or
// force collections (runtime.GC) on the serving path.
package gcpace
