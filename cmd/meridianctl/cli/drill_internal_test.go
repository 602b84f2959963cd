package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

// endingStream is a drill stream whose server has already ended it: every
// Send after the start returns io.EOF, as gRPC's does, while the drill's
// last events are still to be received.
type endingStream struct {
	grpc.ClientStream
	events chan *policyapipb.RunDrillEvent
	sends  atomic.Int32
}

func (s *endingStream) Send(*policyapipb.RunDrillRequest) error {
	if s.sends.Add(1) == 1 {
		return nil // the start
	}
	return io.EOF
}

func (s *endingStream) Recv() (*policyapipb.RunDrillEvent, error) {
	if ev, ok := <-s.events; ok {
		return ev, nil
	}
	return nil, io.EOF
}

type drillClient struct {
	policyapipb.LocalityServiceClient
	st *endingStream
}

func (c drillClient) RunDrill(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[policyapipb.RunDrillRequest, policyapipb.RunDrillEvent], error) {
	return c.st, nil
}

// TestLiveDrillEndsAsHeartbeatMeetsEOF: a heartbeat sent as meridiand ends
// the drill gets io.EOF; the drill's end still arrives by Recv, and the
// command ends cleanly with it instead of failing on the heartbeat.
func TestLiveDrillEndsAsHeartbeatMeetsEOF(t *testing.T) {
	st := &endingStream{events: make(chan *policyapipb.RunDrillEvent)}
	go func() {
		defer close(st.events)
		st.events <- &policyapipb.RunDrillEvent{Event: &policyapipb.RunDrillEvent_Started{Started: &policyapipb.DrillStarted{
			Drill: &policyapipb.Drill{Id: "d1"}, LeaseTtl: durationpb.New(300 * time.Millisecond)}}}
		// Heartbeats are due every 100 ms: let several meet io.EOF first.
		for st.sends.Load() < 3 {
			time.Sleep(10 * time.Millisecond)
		}
		st.events <- &policyapipb.RunDrillEvent{Event: &policyapipb.RunDrillEvent_Ended{Ended: &policyapipb.DrillEnded{Reason: "time up"}}}
	}()
	var out bytes.Buffer
	g := &Globals{Output: "table", Timeout: 5 * time.Second, Out: &out, Err: io.Discard}
	if err := runLiveDrill(t.Context(), g, drillClient{st: st}, &policyapipb.Target{}, time.Second); err != nil {
		t.Fatalf("runLiveDrill: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "drill ended: time up") {
		t.Errorf("the drill's end was not printed:\n%s", out.String())
	}
}
