package httpproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// flags are Envoy's response flags.
type flags uint32

const (
	flagNoHealthy flags = 1 << iota
	flagUpstreamFailure
	flagOverflow
	flagNoRoute
	flagRetryLimit
	flagUpstreamTimeout
	flagDownstreamReset
	flagFaultInjected
	flagDelayInjected
	flagRBAC
	flagDropOverload
	flagNoCluster
	flagUpstreamReset
)

var flagNames = []struct {
	f    flags
	name string
}{
	{flagNoHealthy, "UH"}, {flagUpstreamFailure, "UF"}, {flagOverflow, "UO"}, {flagNoRoute, "NR"},
	{flagRetryLimit, "URX"}, {flagUpstreamTimeout, "UT"}, {flagDownstreamReset, "DC"}, {flagFaultInjected, "FI"},
	{flagDelayInjected, "DI"}, {flagRBAC, "RBAC"}, {flagDropOverload, "DO"}, {flagNoCluster, "NC"}, {flagUpstreamReset, "UR"},
}

func (f *flags) add(x flags) { *f |= x }

func (f flags) String() string {
	if f == 0 {
		return "-"
	}
	var parts []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// recorder remembers the status and counts the bytes written to the
// client.
type recorder struct {
	http.ResponseWriter
	code int
	n    int64
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

// adoptHeader passes a header map on to a writer that can take it.
func (r *recorder) adoptHeader(h http.Header) bool {
	a, ok := r.ResponseWriter.(headerAdopter)
	return ok && a.adoptHeader(h)
}

// Unwrap lets http.ResponseController reach Flush, Hijack and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush implements http.Flusher (forward flushes streams).
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker for protocol upgrades.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := r.ResponseWriter.(http.Hijacker); ok {
		r.code = http.StatusSwitchingProtocols
		return hj.Hijack()
	}
	return nil, nil, errors.New("httpproxy: the connection cannot be hijacked")
}

// localReply answers without an upstream: plain text, or a gRPC status
// for gRPC requests (Envoy's mapping of the HTTP code).
func (h *Handler) localReply(w http.ResponseWriter, x *exchange, code int, msg string) {
	x.code = code
	if x.grpc {
		h.grpcReply(w, x, grpcStatusOf(code), msg)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if x.flags&flagOverflow != 0 {
		w.Header().Set("X-Envoy-Overloaded", "true")
	}
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// grpcReply is a trailers-only gRPC response.
func (h *Handler) grpcReply(w http.ResponseWriter, x *exchange, status int, msg string) {
	x.code = http.StatusOK
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Grpc-Status", fmt.Sprint(status))
	w.Header().Set("Grpc-Message", grpcEscape(msg))
	w.WriteHeader(http.StatusOK)
}

// grpcStatusOf is Envoy's (and gRPC's) HTTP-to-gRPC status mapping.
func grpcStatusOf(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcEscape percent-encodes a grpc-message as the gRPC spec asks.
func grpcEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// trackedBody counts the bytes read from a request body and remembers
// whether anything was read (a body never read can go to another host).
type trackedBody struct {
	io.ReadCloser
	n       atomic.Int64
	touched atomic.Bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	t.touched.Store(true)
	n, err := t.ReadCloser.Read(p)
	t.n.Add(int64(n))
	return n, err
}

// readAll reads a body of known size.
func readAll(r io.Reader, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	// A body longer than announced is the server's to refuse; here the
	// announced length is all that is kept.
	return b, nil
}

// copyBuffers recycles the buffers response bodies are copied through.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
