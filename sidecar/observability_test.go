package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
)

// collector is an OTLP/gRPC trace collector that keeps what it is sent.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []*tracepb.Span
	attrs map[string]string // resource attributes (string values)
}

func startCollector(t *testing.T) *collector {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{addr: ln.Addr().String(), attrs: map[string]string{}}
	g := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(g, c)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			c.attrs[a.GetKey()] = a.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// span returns the exported span of a trace, if any.
func (c *collector) span(traceID string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			return s
		}
	}
	return nil
}

// headerRecorder is an application that keeps the headers of each request
// by path.
type headerRecorder struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen map[string]http.Header
}

func startHeaderRecorder(t *testing.T) *headerRecorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &headerRecorder{addr: netip.MustParseAddrPort(ln.Addr().String()), seen: map[string]http.Header{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen[r.URL.Path] = r.Header.Clone()
		h.mu.Unlock()
		fmt.Fprint(w, "ok")
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *headerRecorder) headers(path string) http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen[path]
}

// lockedBuffer is an access-log sink safe to read while the proxy writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestTracingAndAccessLog: a sidecar exporting to an OTLP collector joins
// the trace a request arrives with, in W3C traceparent or in B3 (single
// header, or multi-header with a 64-bit trace id), makes its own span the
// parent of the upstream request and sends it on in both forms; the spans
// reach the collector with their parents, and the JSON access log records
// each request with its trace id.
func TestTracingAndAccessLog(t *testing.T) {
	m := newMesh(t)
	m.service("traced", 80, registry.ProtocolHTTP)
	app := startHeaderRecorder(t)
	m.endpoint("traced", "t1", app.addr, "z1", nil)
	col := startCollector(t)
	logs := &lockedBuffer{}
	up := testutil.FreeAddr(t)
	px := startProxy(t, m.xds.Addr, sidecar.Config{
		Upstreams: []sidecar.Upstream{{Listen: up, Host: host("traced"), Port: 80}},
		Tracing:   telemetry.TracingConfig{OTLPEndpoint: col.addr, Insecure: true, SampleRatio: 1},
		AccessLog: logs,
	})
	c := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + up.String()
	eventually2xx(t, c, base+"/warm")

	const (
		w3cTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		w3cSpan  = "00f067aa0ba902b7"
		b3Trace  = "463ac35c9f6413ad48485a3953bb6124"
		b3Span   = "a2fb4a1d1a96d312"
		b3Short  = "48485a3953bb6124" // 64-bit: padded with zeros
		b3Span2  = "0020000000000001"
	)
	cases := []struct {
		path, trace, parent string
		hdr                 []string
	}{
		{"/w3c", w3cTrace, w3cSpan, []string{"traceparent", "00-" + w3cTrace + "-" + w3cSpan + "-01"}},
		{"/b3", b3Trace, b3Span, []string{"b3", b3Trace + "-" + b3Span + "-1"}},
		{"/b3multi", "0000000000000000" + b3Short, b3Span2, []string{"X-B3-TraceId", b3Short, "X-B3-SpanId", b3Span2, "X-B3-Sampled", "1"}},
	}
	proxySpan := map[string]string{}
	for _, tc := range cases {
		if code, body, _ := get(t, c, base+tc.path, tc.hdr...); code != 200 {
			t.Fatalf("%s: %d %s", tc.path, code, body)
		}
		h := app.headers(tc.path)
		tp := strings.Split(h.Get("traceparent"), "-")
		if len(tp) != 4 || tp[1] != tc.trace || tp[2] == tc.parent || tp[3] != "01" {
			t.Fatalf("%s: the application got traceparent %q, want trace %s with the proxy's span as parent, sampled", tc.path, h.Get("traceparent"), tc.trace)
		}
		if h.Get("X-B3-TraceId") != tc.trace || h.Get("X-B3-SpanId") != tp[2] || h.Get("X-B3-Sampled") != "1" {
			t.Fatalf("%s: B3 headers %v, want trace %s span %s sampled", tc.path, h, tc.trace, tp[2])
		}
		proxySpan[tc.path] = tp[2]
	}

	px.stop() // flushes the exporter
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, tc := range cases {
			s := col.span(tc.trace)
			if s == nil {
				return fmt.Errorf("%s: no span of trace %s exported", tc.path, tc.trace)
			}
			if got := hex.EncodeToString(s.GetParentSpanId()); got != tc.parent {
				return fmt.Errorf("%s: exported span's parent %s, want %s", tc.path, got, tc.parent)
			}
			if got := hex.EncodeToString(s.GetSpanId()); got != proxySpan[tc.path] {
				return fmt.Errorf("%s: exported span %s, the application saw parent %s", tc.path, got, proxySpan[tc.path])
			}
			if s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
				return fmt.Errorf("%s: span kind %v, want client (outbound)", tc.path, s.GetKind())
			}
		}
		return nil
	})
	if got := col.attrs["service.name"]; got != "meridian-proxy" {
		t.Errorf("service.name = %q", got)
	}

	byPath := map[string]map[string]any{}
	for _, l := range logs.lines(t) {
		if p, _ := l["path"].(string); p != "" {
			byPath[p] = l
		}
	}
	for _, tc := range cases {
		l := byPath[tc.path]
		if l == nil {
			t.Fatalf("no access-log line for %s: %v", tc.path, byPath)
		}
		for k, want := range map[string]any{
			"kind": "http", "method": "GET", "response_code": 200.0, "trace_id": tc.trace,
			"upstream_host": app.addr.String(), "authority": host("traced") + ":80",
		} {
			if l[k] != want {
				t.Errorf("%s: access log %s = %v, want %v (line %v)", tc.path, k, l[k], want, l)
			}
		}
		if cl, _ := l["upstream_cluster"].(string); !strings.Contains(cl, host("traced")) {
			t.Errorf("%s: upstream_cluster %q", tc.path, cl)
		}
		if id, _ := l["request_id"].(string); id == "" {
			t.Errorf("%s: no request id", tc.path)
		}
	}
}
