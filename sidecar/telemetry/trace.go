package telemetry

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TracingConfig configures tracing.
type TracingConfig struct {
	// OTLPEndpoint is an OTLP/gRPC collector (host:port); empty exports
	// nothing, and the proxy only creates spans for routes that ask for
	// tracing, to propagate its own span ids.
	OTLPEndpoint string
	// Insecure speaks plaintext to the collector.
	Insecure bool
	// SampleRatio samples new traces (requests without a sampled parent);
	// default 0.01. Requests with a parent follow its decision.
	SampleRatio float64
	// Service names the proxy in spans (service.name).
	Service string
}

// Tracing creates spans for proxied requests and propagates trace
// context in both W3C traceparent and B3 form: a request arriving with
// either leaves with both, so applications using either format join the
// same trace.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	exports  bool
}

// NewTracing builds tracing; with an OTLP endpoint it exports spans in
// batches. Shutdown flushes them.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	if cfg.SampleRatio == 0 {
		cfg.SampleRatio = 0.01
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(cfg.Service))),
	}
	t := &Tracing{}
	if cfg.OTLPEndpoint != "" {
		eo := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
		if cfg.Insecure {
			eo = append(eo, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, eo...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		t.exports = true
	}
	t.provider = sdktrace.NewTracerProvider(opts...)
	t.tracer = t.provider.Tracer("meridian-proxy")
	// Extraction order matters: the last propagator that finds a valid
	// context wins, so W3C, the standard, beats B3 when both are present.
	t.prop = propagation.NewCompositeTextMapPropagator(B3{}, propagation.TraceContext{})
	return t, nil
}

// Exports reports whether spans leave the process.
func (t *Tracing) Exports() bool { return t != nil && t.exports }

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Start extracts the request's trace context, starts the proxy's span as
// its child, and returns a context carrying it.
func (t *Tracing) Start(r *http.Request, kind trace.SpanKind, name string) (context.Context, trace.Span) {
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("server.address", r.Host),
	))
}

// Inject writes the span's context into outgoing headers, in both forms.
func (t *Tracing) Inject(ctx context.Context, h http.Header) {
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// B3 is Zipkin's B3 propagation: it extracts the single b3 header or the
// multi-header form (X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags)
// and injects the multi-header form, as Envoy does.
type B3 struct{}

var _ propagation.TextMapPropagator = B3{}

// B3 header names.
const (
	b3Single  = "b3"
	b3TraceID = "x-b3-traceid"
	b3SpanID  = "x-b3-spanid"
	b3Parent  = "x-b3-parentspanid"
	b3Sampled = "x-b3-sampled"
	b3Flags   = "x-b3-flags"
)

// Fields implements propagation.TextMapPropagator.
func (B3) Fields() []string {
	return []string{b3Single, b3TraceID, b3SpanID, b3Parent, b3Sampled, b3Flags}
}

// Inject implements propagation.TextMapPropagator.
func (B3) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	c.Set(b3TraceID, sc.TraceID().String())
	c.Set(b3SpanID, sc.SpanID().String())
	if sc.IsSampled() {
		c.Set(b3Sampled, "1")
	} else {
		c.Set(b3Sampled, "0")
	}
}

// Extract implements propagation.TextMapPropagator.
func (B3) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	var sc trace.SpanContext
	var ok bool
	if v := c.Get(b3Single); v != "" {
		sc, ok = ParseB3Single(v)
	} else {
		sc, ok = ParseB3Multi(c.Get(b3TraceID), c.Get(b3SpanID), c.Get(b3Sampled), c.Get(b3Flags))
	}
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// ParseB3Single parses "traceid-spanid[-sampling[-parentspanid]]". A bare
// sampling decision ("0", "1", "d") carries no context and is refused.
func ParseB3Single(v string) (trace.SpanContext, bool) {
	parts := strings.Split(v, "-")
	if len(parts) < 2 || len(parts) > 4 {
		return trace.SpanContext{}, false
	}
	sampled, flags := "", ""
	if len(parts) >= 3 {
		switch parts[2] {
		case "d":
			flags = "1"
		default:
			sampled = parts[2]
		}
	}
	if len(parts) == 4 {
		if _, ok := spanID(parts[3]); !ok {
			return trace.SpanContext{}, false
		}
	}
	return ParseB3Multi(parts[0], parts[1], sampled, flags)
}

// ParseB3Multi parses the multi-header form. 64-bit trace ids are padded
// to 128 bits, as Zipkin does.
func ParseB3Multi(traceIDHex, spanIDHex, sampled, flags string) (trace.SpanContext, bool) {
	if len(traceIDHex) != 16 && len(traceIDHex) != 32 {
		return trace.SpanContext{}, false
	}
	if len(traceIDHex) == 16 {
		traceIDHex = "0000000000000000" + traceIDHex
	}
	var tid trace.TraceID
	if _, err := hex.Decode(tid[:], []byte(traceIDHex)); err != nil || !tid.IsValid() {
		return trace.SpanContext{}, false
	}
	sid, ok := spanID(spanIDHex)
	if !ok {
		return trace.SpanContext{}, false
	}
	var tf trace.TraceFlags
	switch {
	case flags == "1":
		tf = trace.FlagsSampled
	case sampled == "1" || strings.EqualFold(sampled, "true"):
		tf = trace.FlagsSampled
	case sampled == "" || sampled == "0" || strings.EqualFold(sampled, "false"):
	default:
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: tf, Remote: true}), true
}

func spanID(s string) (trace.SpanID, bool) {
	var sid trace.SpanID
	if len(s) != 16 {
		return sid, false
	}
	if _, err := hex.Decode(sid[:], []byte(s)); err != nil || !sid.IsValid() {
		return sid, false
	}
	return sid, true
}
