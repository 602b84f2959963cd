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
//     often (measured, two sidecars with mTLS on one core at 1,000 req/s:
//     p99 0.84–1.3 ms with the floor, 1.46–1.63 ms without). A large
//     configuration's heap goal (GOGC times its live heap) is above the
//     floor already and is left as it is.
//   - one collection when the proxy goes idle after a burst (Run): an idle
//     proxy's heap holds what its last burst (a push, a wave of requests)
//     left, up to the heap goal, until it allocates its way to the goal
//     again, which idle it never does. Once allocation nearly stops, Run
//     collects and returns the free pages to the system
//     (debug.FreeOSMemory), so a proxy that waits for traffic keeps only
//     what it uses (measured: a proxy with 1,000 clusters and 10,000
//     endpoints, after one dump of /clusters, 33.4–34.8 MB resident without,
//     31.3 MB with).
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
// force collections on the serving path (the idle collection runs on Run's
// goroutine, and only when the proxy is not allocating).
package gcpace
