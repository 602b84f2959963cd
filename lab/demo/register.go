package demo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
)

// Keepalive registers req with the Workload API, then heartbeats at a
// third of the TTL until ctx ends, and deregisters. Failures after the
// first registration are logged and retried — an instance outlives a
// meridiand restart — and a workload meridiand no longer knows is
// registered again. It returns an error only when the first registration
// is refused for a reason other than unavailability.
func Keepalive(ctx context.Context, c workloadpb.WorkloadServiceClient, req *workloadpb.RegisterRequest, log *slog.Logger) error {
	if req.Ttl == nil {
		req.Ttl = durationpb.New(5 * time.Second)
	}
	interval := max(req.GetTtl().AsDuration()/3, 100*time.Millisecond)
	id, registered := "", false
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, interval)
		var err error
		if id == "" {
			var resp *workloadpb.RegisterResponse
			if resp, err = c.Register(rctx, req); err == nil {
				id = resp.GetWorkload().GetId()
				log.Info("registered", "id", id, "address", req.GetAddress())
				registered = true
			}
		} else {
			_, err = c.Heartbeat(rctx, &workloadpb.HeartbeatRequest{Id: id})
			if status.Code(err) == codes.NotFound {
				log.Warn("meridiand forgot this workload: registering again", "id", id)
				id = ""
			}
		}
		cancel()
		switch code := status.Code(err); {
		case err == nil, ctx.Err() != nil:
		case !registered && code != codes.Unavailable && code != codes.DeadlineExceeded:
			return fmt.Errorf("demo: registering %s.%s at %s: %w", req.GetService(), req.GetNamespace(), req.GetAddress(), err)
		default:
			log.Warn("workload API", "err", err)
		}
		select {
		case <-ctx.Done():
			if id != "" {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_, _ = c.Deregister(dctx, &workloadpb.DeregisterRequest{Id: id})
				cancel()
			}
			return nil
		case <-t.C:
		}
	}
}
