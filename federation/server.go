package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
)

// nodeHeader carries the caller's node name, which the server checks
// against the caller's TLS identity when an Authenticator is configured.
const nodeHeader = "meridian-node"

// server serves the Federation gRPC service: reads of what this member
// holds. Requests are validated like any network input; errors become gRPC
// codes here and only here.
type server struct {
	pb.UnimplementedFederationServer
	f *Federation
}

func (s *server) PullSegment(req *pb.PullSegmentRequest, stream grpc.ServerStreamingServer[pb.SegmentChunk]) error {
	f := s.f
	if err := f.checkRequest(req.GetProtocol()); err != nil {
		return err
	}
	if err := validClusterName(req.GetCluster()); err != nil {
		f.m.drop(dropInvalid)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	seg := f.reg.View().Segment(req.GetCluster())
	if seg == nil || seg.Epoch() == 0 {
		return status.Errorf(codes.NotFound, "no segment of cluster %q here", req.GetCluster())
	}
	have, asked := segVer{seg.Epoch(), seg.Version()}, segVer{req.GetEpoch(), req.GetVersion()}
	if !asked.less(have) {
		return nil // the caller is not behind this member
	}
	out := chunker[pb.SegmentChunk]{limit: f.cfg.Limits.ChunkBytes, send: stream.Send, fresh: func() *pb.SegmentChunk {
		return &pb.SegmentChunk{Protocol: protocolVersion}
	}}
	if asked.epoch == have.epoch {
		if batches, ok := f.reg.ChangesSince(req.GetCluster(), asked.epoch, asked.version); ok {
			for _, b := range batches {
				pbb := batchToPB(b)
				if err := out.add(proto.Size(pbb), func(c *pb.SegmentChunk) { c.Batches = append(c.Batches, pbb) }); err != nil {
					return err
				}
			}
			return out.flush()
		}
	}
	// A full copy: the caller is new, restarted from another epoch, or
	// further behind than the log reaches.
	data := seg.Data()
	if err := out.add(0, func(c *pb.SegmentChunk) {
		c.Full = &pb.SegmentHeader{
			Cluster: clusterToPB(data.Cluster), Epoch: data.Epoch, Version: data.Version,
			Services: uint32(len(data.Services)), Endpoints: uint32(len(data.Endpoints)),
		}
	}); err != nil {
		return err
	}
	for _, sv := range data.Services {
		p := serviceToPB(sv)
		if err := out.add(proto.Size(p), func(c *pb.SegmentChunk) { c.Services = append(c.Services, p) }); err != nil {
			return err
		}
	}
	for _, e := range data.Endpoints {
		p := endpointToPB(e)
		if err := out.add(proto.Size(p), func(c *pb.SegmentChunk) { c.Endpoints = append(c.Endpoints, p) }); err != nil {
			return err
		}
	}
	return out.flush()
}

func (s *server) PullPolicies(req *pb.PullPoliciesRequest, stream grpc.ServerStreamingServer[pb.PolicyChunk]) error {
	f := s.f
	if err := f.checkRequest(req.GetProtocol()); err != nil {
		return err
	}
	if len(req.GetVector()) > f.pol.MaxResources() {
		f.m.drop(dropOversized)
		return status.Errorf(codes.InvalidArgument, "vector of %d entries", len(req.GetVector()))
	}
	for _, e := range req.GetVector() {
		if err := validNodeName(e.GetOrigin()); err != nil {
			f.m.drop(dropInvalid)
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	sync := f.pol.Changes(vectorFromPB(req.GetVector()), req.GetFull())
	out := chunker[pb.PolicyChunk]{limit: f.cfg.Limits.ChunkBytes, send: stream.Send, fresh: func() *pb.PolicyChunk {
		return &pb.PolicyChunk{Protocol: protocolVersion}
	}}
	for i := range sync.Records {
		p := policyToPB(&sync.Records[i])
		if err := out.add(proto.Size(p), func(c *pb.PolicyChunk) { c.Policies = append(c.Policies, p) }); err != nil {
			return err
		}
	}
	if err := out.add(0, func(c *pb.PolicyChunk) {
		c.Last, c.Vector, c.Horizon, c.Full = true, vectorToPB(sync.Vector), uint64(sync.Horizon), sync.Full
	}); err != nil {
		return err
	}
	return out.flush()
}

func (s *server) Identify(_ context.Context, req *pb.IdentifyRequest) (*pb.IdentifyResponse, error) {
	if err := s.f.checkRequest(req.GetProtocol()); err != nil {
		return nil, err
	}
	return &pb.IdentifyResponse{Protocol: protocolVersion, Node: s.f.node}, nil
}

func (f *Federation) checkRequest(protocol uint32) error {
	if protocol != protocolVersion {
		f.m.drop(dropUnknownVersion)
		return status.Errorf(codes.FailedPrecondition, "protocol %d; this member speaks %d", protocol, protocolVersion)
	}
	return nil
}

// chunker cuts a stream reply into messages of about limit bytes.
type chunker[T any] struct {
	limit int
	send  func(*T) error
	fresh func() *T
	cur   *T
	size  int
}

func (c *chunker[T]) add(size int, put func(*T)) error {
	if c.cur != nil && c.size+size > c.limit {
		if err := c.flush(); err != nil {
			return err
		}
	}
	if c.cur == nil {
		c.cur, c.size = c.fresh(), 0
	}
	put(c.cur)
	c.size += size
	return nil
}

func (c *chunker[T]) flush() error {
	if c.cur == nil {
		return nil
	}
	err := c.send(c.cur)
	c.cur = nil
	return err
}

// authorize checks a caller's TLS identity against the cluster it claims,
// when an Authenticator is configured.
func (f *Federation) authorize(ctx context.Context) error {
	if f.cfg.Authenticator == nil {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var node string
	if v := md.Get(nodeHeader); len(v) == 1 {
		node = v[0]
	}
	if err := validNodeName(node); err != nil {
		f.m.drop(dropUnverified)
		f.members.logRefusal("caller without a valid "+nodeHeader, err)
		return status.Errorf(codes.Unauthenticated, "%s header: %v", nodeHeader, err)
	}
	p, _ := peer.FromContext(ctx)
	var ai credentials.AuthInfo
	if p != nil {
		ai = p.AuthInfo
	}
	if err := f.cfg.Authenticator.Authenticate(clusterOf(node), tlsState(ai)); err != nil {
		f.m.drop(dropUnverified)
		f.members.logRefusal(node, err)
		return status.Errorf(codes.PermissionDenied, "%s: %v", node, err)
	}
	return nil
}

func (f *Federation) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (f *Federation) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := f.authorize(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// connPool keeps one client connection per member address.
type connPool struct {
	f        *Federation
	mu       sync.Mutex
	m        map[string]*grpc.ClientConn
	draining map[*grpc.ClientConn]*time.Timer // replaced by Reconnect; closed when the timer fires, or by closeAll
}

func newConnPool(f *Federation) *connPool {
	return &connPool{f: f, m: map[string]*grpc.ClientConn{}, draining: map[*grpc.ClientConn]*time.Timer{}}
}

// Reconnect makes the next calls to every member handshake again, with
// the credentials of now: for after this member's certificate changed
// (a root rotation's activate reissues it under the new root), so that no
// connection still presents the old one when that root is retired, and
// no member has to refuse it first (see refused). Calls under way finish
// on the connections they started on, which close after PullTimeout.
func (f *Federation) Reconnect() {
	p := f.conns
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.m {
		delete(p.m, addr)
		p.draining[c] = time.AfterFunc(f.cfg.Gossip.PullTimeout, func() {
			p.mu.Lock()
			_, ok := p.draining[c]
			delete(p.draining, c)
			p.mu.Unlock()
			if ok {
				c.Close()
			}
		})
	}
}

func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.m[addr]; ok {
		return c, nil
	}
	f := p.f
	count := f.m.countBytes("grpc")
	dial := f.cfg.Dialer
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	creds := insecure.NewCredentials()
	if f.creds != nil {
		creds = credentials.NewTLS(f.creds.ClientTLS())
	}
	withNode := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, nodeHeader, f.node)
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			conn, err := dial(ctx, a)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, count: count}, nil
		}),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := inv(withNode(ctx), method, req, reply, cc, opts...)
			p.refused(addr, cc, err)
			return err
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, s grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := s(withNode(ctx), desc, cc, method, opts...)
			if err != nil {
				p.refused(addr, cc, err)
				return nil, err
			}
			return &refusalStream{ClientStream: cs, refused: func(err error) { p.refused(addr, cc, err) }}, nil
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("federation: dial %s: %w", addr, err)
	}
	p.m[addr] = c
	return c, nil
}

// refused drops the connection to addr when its peer refused the
// identity it proved (PermissionDenied, see authorize), so that the next
// call handshakes again. A member checks a connection's certificate
// against its bundle at every call, not once: after a root rotation
// retires the root that certificate chained to, every call on a
// connection made before is refused, while a new handshake presents the
// member SVID reissued under the new root.
func (p *connPool) refused(addr string, cc *grpc.ClientConn, err error) {
	if status.Code(err) != codes.PermissionDenied {
		return
	}
	p.mu.Lock()
	mine := p.m[addr] == cc
	if mine {
		delete(p.m, addr)
	}
	p.mu.Unlock()
	if mine {
		p.f.log.Info("member refused this connection's identity; connecting again", "addr", addr, "err", err)
		cc.Close()
	}
}

// refusalStream reports a stream's error to refused.
type refusalStream struct {
	grpc.ClientStream
	refused func(error)
}

func (s *refusalStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && !errors.Is(err, io.EOF) {
		s.refused(err)
	}
	return err
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.m {
		c.Close()
		delete(p.m, a)
	}
	for c, t := range p.draining {
		t.Stop()
		c.Close()
		delete(p.draining, c)
	}
}
