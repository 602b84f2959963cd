package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/upstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// attempts sends a request to the exchange's cluster, retrying on other
// hosts as the route's retry policy allows.
type attempts struct{ h *Handler }

func nop() {}

// errPerTryTimeout marks an attempt that ran out of its per-try timeout.
var errPerTryTimeout = errors.New("httpproxy: per-try timeout")

func (a attempts) roundTrip(out *http.Request, x *exchange) (*http.Response, error) {
	cl := x.cluster
	release, err := cl.AcquireRequest()
	if err != nil {
		x.flags.add(flagOverflow)
		return nil, err
	}
	rp := x.retryPolicy()
	maxAttempts := 1
	if rp != nil {
		maxAttempts += rp.NumRetries
	}
	var tried []*lb.Host
	// A retry holds its max_retries (or budget) slot until its attempt
	// answers, as in Envoy: the breaker bounds retries in flight, not
	// retries waiting out their backoff.
	retryDone := nop
	for {
		x.attempts++
		h, err := cl.Pick(tried, x.conn.Dest)
		if err != nil {
			x.flags.add(flagNoHealthy)
			retryDone()
			release()
			return nil, err
		}
		x.host = h
		resp, err := a.attempt(out, x, h, rp)
		retryDone()
		retryDone = nop
		if x.attempts >= maxAttempts || out.Context().Err() != nil || !a.retryable(rp, resp, err, x) {
			if x.attempts > 1 && rp != nil && x.attempts >= maxAttempts && (err != nil || resp.StatusCode >= 500) {
				x.flags.add(flagRetryLimit)
			}
			if err != nil {
				release()
				return nil, err
			}
			attach(resp, release)
			return resp, nil
		}
		done, ok := cl.AcquireRetry()
		if !ok {
			if err != nil {
				release()
				return nil, err
			}
			attach(resp, release)
			return resp, nil
		}
		a.h.o.Telemetry.Metrics.Retries.WithLabelValues(cl.Name()).Inc()
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		tried = append(tried, h)
		wait := backoff(rp, x.attempts-1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-out.Context().Done():
			t.Stop()
		}
		retryDone = done
	}
}

// backoff is Envoy's fully jittered exponential backoff.
func backoff(rp *xdsconfig.RetryPolicy, n int) time.Duration {
	limit := min(rp.BackoffBase<<min(n, 16), rp.BackoffMax)
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(limit)))
}

// attempt sends one try to one host.
func (a attempts) attempt(out *http.Request, x *exchange, h *lb.Host, rp *xdsconfig.RetryPolicy) (*http.Response, error) {
	cl := x.cluster
	// out is forward's own copy of the request, with its own URL and
	// headers, and attempts run one after the other: each attempt may
	// change it in place. A per-try timeout needs a context of its own.
	ctx, req := out.Context(), out
	cancel := nop
	if rp != nil && rp.PerTryTimeout > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, rp.PerTryTimeout, errPerTryTimeout)
		req = out.WithContext(ctx)
	}
	if x.body != nil {
		body := x.body
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	releaseConn := func() {}
	if !cl.UsesHTTP2(x.h2) {
		r, err := cl.AcquireConnection(ctx)
		if err != nil {
			cancel()
			if errors.Is(err, upstream.ErrOverflow) {
				x.flags.add(flagOverflow)
			}
			return nil, err
		}
		releaseConn = r
	}
	h.Begin()
	resp, err := cl.RoundTrip(req, h, x.h2)
	if err != nil {
		h.End()
		releaseConn()
		if context.Cause(ctx) == errPerTryTimeout && out.Context().Err() == nil {
			err = errPerTryTimeout
		}
		cancel()
		a.classify(x, err)
		if out.Context().Err() == nil {
			cl.LB.Report(h, lb.ErrorLocal)
		}
		return nil, err
	}
	if resp.TLS != nil {
		x.upstreamTLS = identity.PeerID(resp.TLS)
	}
	done := func() { h.End(); releaseConn(); cancel() }
	if gs, ok := grpcStatus(resp.Header); ok || !x.grpc {
		if ok {
			cl.LB.Report(h, lb.OutcomeOf(grpcToHTTP(gs)))
		} else {
			cl.LB.Report(h, lb.OutcomeOf(resp.StatusCode))
		}
	} else {
		// A streaming gRPC answer tells its status in the trailers.
		trailers := resp
		inner := done
		done = func() {
			gs, _ := grpcStatus(trailers.Trailer)
			cl.LB.Report(h, lb.OutcomeOf(grpcToHTTP(gs)))
			inner()
		}
	}
	attach(resp, done)
	return resp, nil
}

// classify sets the response flags of a failed attempt.
func (a attempts) classify(x *exchange, err error) {
	var ce *upstream.ConnectError
	switch {
	case errors.As(err, &ce):
		x.flags.add(flagUpstreamFailure)
	case errors.Is(err, errPerTryTimeout), errors.Is(err, context.DeadlineExceeded):
		x.flags.add(flagUpstreamTimeout)
	case errors.Is(err, context.Canceled):
		x.flags.add(flagDownstreamReset)
	default:
		x.flags.add(flagUpstreamReset)
	}
}

// retryable applies the retry policy to an attempt's result.
func (a attempts) retryable(rp *xdsconfig.RetryPolicy, resp *http.Response, err error, x *exchange) bool {
	if rp == nil {
		return false
	}
	on := rp.On
	if err != nil {
		var ce *upstream.ConnectError
		if errors.As(err, &ce) {
			// Nothing reached the host: any body can go elsewhere.
			return on&(xdsconfig.RetryConnectFailure|xdsconfig.Retry5xx|xdsconfig.RetryGatewayError|xdsconfig.RetryReset) != 0
		}
		if !x.replayable && (x.tracked == nil || x.tracked.touched.Load()) {
			return false
		}
		if errors.Is(err, errPerTryTimeout) {
			return on&(xdsconfig.Retry5xx|xdsconfig.RetryGatewayError|xdsconfig.RetryReset) != 0
		}
		if errors.Is(err, upstream.ErrOverflow) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false
		}
		return on&(xdsconfig.RetryReset|xdsconfig.Retry5xx|xdsconfig.RetryGatewayError) != 0
	}
	if !x.replayable {
		return false
	}
	code := resp.StatusCode
	switch {
	case on&xdsconfig.Retry5xx != 0 && code >= 500:
		return true
	case on&xdsconfig.RetryGatewayError != 0 && (code == 502 || code == 503 || code == 504):
		return true
	case on&xdsconfig.RetryRetriable4xx != 0 && code == 409:
		return true
	case on&xdsconfig.RetryStatusCodes != 0 && containsInt(rp.StatusCodes, code):
		return true
	}
	if gs, ok := grpcStatus(resp.Header); ok {
		switch gs {
		case 1:
			return on&xdsconfig.RetryGRPCCancelled != 0
		case 4:
			return on&xdsconfig.RetryGRPCDeadlineExceeded != 0
		case 8:
			return on&xdsconfig.RetryGRPCResourceExhausted != 0
		case 13:
			return on&xdsconfig.RetryGRPCInternal != 0
		case 14:
			return on&xdsconfig.RetryGRPCUnavailable != 0
		}
	}
	return false
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func grpcStatus(h http.Header) (int, bool) {
	v := h.Get("Grpc-Status")
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// grpcToHTTP maps a gRPC status to the HTTP code outlier detection sees,
// as Envoy does.
func grpcToHTTP(s int) int {
	switch s {
	case 0:
		return 200
	case 1:
		return 499
	case 3, 9, 11:
		return 400
	case 4:
		return 504
	case 5:
		return 404
	case 7:
		return 403
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 16:
		return 401
	}
	return 500
}

// upstreamError turns a failed forward into Envoy's local reply.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	var ce *upstream.ConnectError
	switch {
	case errors.Is(err, upstream.ErrOverflow):
		x.flags.add(flagOverflow)
		h.localReply(w, x, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow")
	case errors.Is(err, upstream.ErrNoHost):
		h.localReply(w, x, http.StatusServiceUnavailable, "no healthy upstream")
	case errors.As(err, &ce):
		h.localReply(w, x, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: "+ce.Err.Error())
	case errors.Is(err, errPerTryTimeout), errors.Is(r.Context().Err(), context.DeadlineExceeded):
		x.flags.add(flagUpstreamTimeout)
		h.localReply(w, x, http.StatusGatewayTimeout, "upstream request timeout")
	case errors.Is(r.Context().Err(), context.Canceled):
		// The client went away: nobody reads an answer.
		x.flags.add(flagDownstreamReset)
		x.code = 0
	default:
		h.localReply(w, x, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: remote reset, transport failure reason: "+err.Error())
	}
}

// attach calls fn once when the response body is closed or read to its
// end; an upgraded connection's body stays writable.
func attach(resp *http.Response, fn func()) {
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = upgraded{rwc, sync.OnceFunc(fn)}
		return
	}
	resp.Body = &closeHook{ReadCloser: resp.Body, fn: fn}
}

// closeHook calls fn once, at the body's end or close, whichever comes
// first (an atomic flag rather than sync.OnceFunc: one allocation less
// per request).
type closeHook struct {
	io.ReadCloser
	fn   func()
	done atomic.Bool
}

func (c *closeHook) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF && c.done.CompareAndSwap(false, true) {
		c.fn()
	}
	return n, err
}

func (c *closeHook) Close() error {
	err := c.ReadCloser.Close()
	if c.done.CompareAndSwap(false, true) {
		c.fn()
	}
	return err
}

// upgraded keeps a switched protocol's body writable (forward needs an
// io.ReadWriteCloser to splice an upgraded connection).
type upgraded struct {
	io.ReadWriteCloser
	fn func()
}

func (u upgraded) Close() error {
	err := u.ReadWriteCloser.Close()
	u.fn()
	return err
}
