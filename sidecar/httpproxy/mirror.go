package httpproxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/lb"
)

// DefaultMaxShadows bounds the mirrored requests in flight.
const DefaultMaxShadows = 256

// Shadows sends mirrored requests and owns their goroutines: at most a
// bounded number in flight (beyond it a mirror is skipped, never queued),
// each with the route's timeout, all cancelled and waited for by Close.
type Shadows struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	slots   chan struct{}
	dropped func()
}

// NewShadows returns a mirror sender; dropped is called for every mirror
// skipped because too many are in flight.
func NewShadows(maxInFlight int, dropped func()) *Shadows {
	ctx, cancel := context.WithCancel(context.Background())
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxShadows
	}
	if dropped == nil {
		dropped = func() {}
	}
	return &Shadows{ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxInFlight), dropped: dropped}
}

// Close cancels the mirrors in flight and waits for them; idempotent.
func (s *Shadows) Close() {
	s.cancel()
	s.wg.Wait()
}

// send mirrors a request with a replayable body to a cluster.
func (s *Shadows) send(h *Handler, r *http.Request, x *exchange, cluster string) {
	cl := h.o.Env.Cluster(cluster)
	if cl == nil || s.ctx.Err() != nil {
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.dropped()
		return
	}
	timeout := x.route.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	req := r.Clone(ctx)
	req.RequestURI = ""
	req.URL.Scheme = "http"
	// Envoy marks mirrored traffic by the authority's -shadow suffix.
	host, port, hasPort := strings.Cut(r.Host, ":")
	req.Host = host + "-shadow"
	if hasPort {
		req.Host += ":" + port
	}
	body := x.body
	req.Body, req.ContentLength = http.NoBody, 0
	if len(body) > 0 {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	h2 := x.h2
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		defer cancel()
		host, err := cl.Pick(nil, x.conn.Dest)
		if err != nil {
			return
		}
		host.Begin()
		defer host.End()
		resp, err := cl.RoundTrip(req, host, h2)
		if err != nil {
			cl.LB.Report(host, lb.ErrorLocal)
			return
		}
		cl.LB.Report(host, lb.OutcomeOf(resp.StatusCode))
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
}
