package cli

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// errorDomain is the domain of the google.rpc.ErrorInfo meridiand sends
// with an answer that names another meridiand to ask ("leader" in its
// metadata): a follower naming its cluster's leader (Workload API, root
// rotation), or a cluster naming the root holder.
const errorDomain = "meridian.io"

// closeConn is a connection to meridiand and what else it opened.
type closeConn struct {
	*grpc.ClientConn
	lf *leaderFollower
}

func (c closeConn) Close() error {
	c.lf.close()
	return c.ClientConn.Close()
}

// dialLeader connects to meridiand like Dial, and sends every call that
// meridiand answers by naming another one there — once, and from then on
// for the rest of the command, saying so on stderr.
func (g *Globals) dialLeader() (closeConn, error) {
	lf := &leaderFollower{g: g}
	conn, err := g.Dial(grpc.WithChainUnaryInterceptor(lf.intercept))
	if err != nil {
		return closeConn{}, err
	}
	return closeConn{ClientConn: conn, lf: lf}, nil
}

type leaderFollower struct {
	g      *Globals
	mu     sync.Mutex
	leader *grpc.ClientConn // once meridiand named one
}

func (lf *leaderFollower) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if l := lf.current(); l != nil {
		return l.Invoke(ctx, method, req, reply, opts...)
	}
	err := invoke(ctx, method, req, reply, cc, opts...)
	addr := leaderOf(err)
	if addr == "" || addr == lf.g.Server {
		return err
	}
	l, derr := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if derr != nil {
		return err
	}
	fmt.Fprintf(lf.g.Err, "meridiand at %s sends this to %s: %s\n", lf.g.Server, addr, status.Convert(err).Message())
	lf.mu.Lock()
	lf.leader, lf.g.Server = l, addr
	lf.mu.Unlock()
	return l.Invoke(ctx, method, req, reply, opts...)
}

func (lf *leaderFollower) current() *grpc.ClientConn {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.leader
}

func (lf *leaderFollower) close() {
	if l := lf.current(); l != nil {
		l.Close()
	}
}

// leaderOf returns the meridiand an answer names to ask instead, "" for
// any other answer.
func leaderOf(err error) string {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info.GetMetadata()["leader"]
		}
	}
	return ""
}
