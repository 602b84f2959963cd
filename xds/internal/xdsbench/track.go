package main

import (
	"slices"
	"sync"
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// tracker watches every ADS stream of the server under test from a gRPC
// stream interceptor — the same code for Meridian and the baseline — and
// tells when clients have ACKed: all four types once (initial sync), and
// an endpoint push sent after a change.
type tracker struct {
	mu      sync.Mutex
	cond    *sync.Cond
	streams map[*trackedStream]struct{}
	synced  int       // streams that ACKed every type
	change  time.Time // start of the change being measured
	acked   []time.Duration
}

func newTracker() *tracker {
	t := &tracker{streams: map[*trackedStream]struct{}{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

type sent struct {
	nonce string
	at    time.Time
}

type trackedStream struct {
	grpc.ServerStream
	t      *tracker
	sent   map[string]sent
	types  map[string]bool
	synced bool
	ackAt  time.Time // ACK of an endpoint push sent after the change
}

func (t *tracker) interceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	st := &trackedStream{ServerStream: ss, t: t, sent: map[string]sent{}, types: map[string]bool{}}
	t.mu.Lock()
	t.streams[st] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.streams, st)
		if st.synced {
			t.synced--
		}
		t.mu.Unlock()
	}()
	return handler(srv, st)
}

// xdsMessage is what state-of-the-world and delta messages share.
type xdsMessage interface {
	GetTypeUrl() string
	GetNonce() string
}

type xdsRequest interface {
	GetTypeUrl() string
	GetResponseNonce() string
	GetErrorDetail() *rpcstatus.Status
}

func (s *trackedStream) SendMsg(m any) error {
	if r, ok := m.(xdsMessage); ok {
		s.t.mu.Lock()
		s.sent[r.GetTypeUrl()] = sent{nonce: r.GetNonce(), at: time.Now()}
		s.t.mu.Unlock()
	}
	return s.ServerStream.SendMsg(m)
}

func (s *trackedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	req, ok := m.(xdsRequest)
	if err != nil || !ok || req.GetResponseNonce() == "" || req.GetErrorDetail() != nil {
		return err
	}
	now := time.Now()
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	last, ok := s.sent[req.GetTypeUrl()]
	if !ok || last.nonce != req.GetResponseNonce() {
		return err
	}
	s.types[req.GetTypeUrl()] = true
	if !s.synced && len(s.types) == len(translate.Types) {
		s.synced = true
		t.synced++
		t.cond.Broadcast()
	}
	if req.GetTypeUrl() == translate.EndpointType && !t.change.IsZero() && s.ackAt.IsZero() && !last.at.Before(t.change) {
		s.ackAt = now
		t.acked = append(t.acked, now.Sub(t.change))
		t.cond.Broadcast()
	}
	return err
}

// waitSynced waits until n streams have ACKed every type.
func (t *tracker) waitSynced(n int, timeout time.Duration) bool {
	return t.wait(timeout, func() bool { return t.synced >= n })
}

// startChange marks the start of a change; every stream's next ACK of an
// endpoint push sent after it counts.
func (t *tracker) startChange() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.change = time.Now()
	t.acked = t.acked[:0]
	for s := range t.streams {
		s.ackAt = time.Time{}
	}
	return t.change
}

// waitChange waits until n streams have ACKed the change and returns the
// time each took, sorted.
func (t *tracker) waitChange(n int, timeout time.Duration) ([]time.Duration, bool) {
	ok := t.wait(timeout, func() bool { return len(t.acked) >= n })
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.acked)
	slices.Sort(out)
	t.change = time.Time{}
	return out, ok
}

func (t *tracker) wait(timeout time.Duration, done func() bool) bool {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stop.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	for !done() {
		if time.Now().After(deadline) {
			return false
		}
		t.cond.Wait()
	}
	return true
}
