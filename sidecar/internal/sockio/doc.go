// Package sockio gives the proxy's TCP connections reads and writes made
// as raw system calls (Linux): the data path's sockets, accepted by
// package listen and dialed by package upstream.
//
// Why: every read and write through net.TCPConn enters the runtime's
// blocking-system-call path. On an idle process that wakes the runtime's
// monitor thread (sysmon) from its deep sleep, which then polls every
// 20 µs while the request is served; and a loopback write, which runs the
// receiver's TCP stack inline (20–40 µs), outlasts one such poll, so the
// monitor hands the processor to another thread and the writer waits to
// get it back. Two sidecars with mTLS at 1,000 requests/s made 12.8
// context switches per request that way (HAProxy's pair: 3.6); with raw
// calls they make 3.7, and use 18% less CPU. A socket read or write in
// non-blocking mode never blocks, so it loses nothing by not being
// announced to the scheduler: when there is nothing to read or no room to
// write, the call returns at once and the goroutine waits in the network
// poller, as before.
//
// Deadlines, closing, half-close and socket options stay the
// *net.TCPConn's, and errors have its shapes (*net.OpError, io.EOF,
// os.ErrDeadlineExceeded, net.ErrClosed). Under the race detector a write
// happens before the read that receives it, as package syscall tells it.
//
// It must not hold state beyond one call, nor wrap anything but TCP.
package sockio
