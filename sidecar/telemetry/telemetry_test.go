package telemetry_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/meridian-mesh/meridian/sidecar/telemetry"
)

func TestB3(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", true, true},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0", true, false},
		{"64fe8b2a57d3eff7-e457b5a2e4d86bd1-d", true, true},
		{"64fe8b2a57d3eff7-e457b5a2e4d86bd1", true, false},
		{"0", false, false},
		{"00000000000000000000000000000000-e457b5a2e4d86bd1", false, false},
		{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-yes", false, false},
		{"xyz-abc", false, false},
	} {
		sc, ok := telemetry.ParseB3Single(tc.in)
		if ok != tc.ok || (ok && sc.IsSampled() != tc.sampled) {
			t.Errorf("%q: ok %v sampled %v, want %v %v", tc.in, ok, sc.IsSampled(), tc.ok, tc.sampled)
		}
	}
	// Extracted from B3 multi-headers, injected as both B3 and W3C.
	h := http.Header{}
	h.Set("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7")
	h.Set("X-B3-SpanId", "e457b5a2e4d86bd1")
	h.Set("X-B3-Sampled", "1")
	prop := propagation.NewCompositeTextMapPropagator(telemetry.B3{}, propagation.TraceContext{})
	ctx := prop.Extract(context.Background(), propagation.HeaderCarrier(h))
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != "80f198ee56343ba864fe8b2a57d3eff7" || !sc.IsSampled() {
		t.Fatalf("extracted %v", sc)
	}
	out := http.Header{}
	prop.Inject(ctx, propagation.HeaderCarrier(out))
	if out.Get("Traceparent") != "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01" || out.Get("X-B3-Traceid") != "80f198ee56343ba864fe8b2a57d3eff7" {
		t.Fatalf("injected %v", out)
	}
}

func FuzzB3(f *testing.F) {
	f.Add("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
	f.Add("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d")
	f.Add("0")
	f.Fuzz(func(t *testing.T, s string) {
		if sc, ok := telemetry.ParseB3Single(s); ok && !sc.IsValid() {
			t.Fatalf("%q accepted as an invalid span context", s)
		}
	})
}

func TestPeerHeader(t *testing.T) {
	p := telemetry.Peer{Workload: "web", Namespace: "shop", Cluster: "eks-use1", Locality: "us-east-1/use1-az1"}
	got, ok := telemetry.ParsePeer(p.Encode())
	if !ok || got != p {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	for _, bad := range []string{"workload", "workload=%zz", "workload=a%0Ab"} {
		if _, ok := telemetry.ParsePeer(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPeerFromSPIFFE(t *testing.T) {
	for _, tc := range []struct {
		id  string
		ns  string
		wkl string
	}{
		{"spiffe://mesh.test/ns/shop/sa/web", "shop", "web"},
		{"spiffe://mesh.test/sa/web/ns/shop", "shop", "web"},
		{"spiffe://mesh.test/ns/shop", "shop", ""},
		{"spiffe://mesh.test/ns/shop/sa", "shop", ""},      // a key without its value
		{"spiffe://mesh.test/x/ns/sa/web", "", "web"},      // "ns" as a value is not a key
		{"spiffe://ns/sa/sa/web", "", "sa"},                // the trust domain is no key
		{"spiffe://mesh.test/meridian/cluster/c1", "", ""}, // not a workload's
		{"https://mesh.test/ns/shop/sa/web", "", ""},       // not SPIFFE
		{"", "", ""},
	} {
		if p := telemetry.PeerFromSPIFFE(tc.id); p.Namespace != tc.ns || p.Workload != tc.wkl || p.Cluster != "" || p.Locality != "" {
			t.Errorf("PeerFromSPIFFE(%q) = %+v; want namespace %q, workload %q", tc.id, p, tc.ns, tc.wkl)
		}
	}
}

func FuzzPeerHeader(f *testing.F) {
	f.Add(telemetry.Peer{Workload: "web", Namespace: "shop", Cluster: "c1", Locality: "r/z"}.Encode())
	f.Add("workload=a;namespace=%2F")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := telemetry.ParsePeer(s)
		if !ok {
			return
		}
		// What is accepted encodes and parses back to itself (when the
		// encoding, which escapes, still fits the bound).
		enc := p.Encode()
		if enc == "" || len(enc) > telemetry.MaxPeerHeader {
			return
		}
		if q, ok := telemetry.ParsePeer(enc); !ok || q != p {
			t.Fatalf("%q: %+v does not round-trip (%+v)", s, p, q)
		}
	})
}
