package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// newMember builds (and runs) one member alone, for feeding it bad input.
func newMember(t *testing.T, edit func(*Config)) *Federation {
	t.Helper()
	reg := registry.New(registry.Options{})
	cfg := Config{
		Cluster: registry.Cluster{Name: "home", Region: "r1"}, Replica: "r0", Registry: reg,
		GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Keys: [][]byte{testKey}, Gossip: Local(),
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		if !f.Leading() {
			return errors.New("not leading yet")
		}
		return nil
	})
	return f
}

func dropped(f *Federation, reason string) float64 {
	return promtest.ToFloat64(f.m.dropped.WithLabelValues(reason))
}

// expectDrop runs fn and checks that it dropped one more message for
// reason, and left the registry's view as it was.
func expectDrop(t *testing.T, f *Federation, reason string, fn func()) {
	t.Helper()
	before, held := dropped(f, reason), segments(f)
	fn()
	if got := dropped(f, reason); got != before+1 {
		t.Errorf("dropped{reason=%s}: %v, want %v", reason, got, before+1)
	}
	if now := segments(f); now != held {
		t.Errorf("a %s message changed the registry: %s, was %s", reason, now, held)
	}
}

// segments summarizes every segment held: cluster, epoch, version, size.
func segments(f *Federation) string {
	v := f.reg.View()
	var b strings.Builder
	for _, c := range v.Clusters() {
		s := v.Segment(c)
		fmt.Fprintf(&b, "%s@%d.%d:%d ", c, s.Epoch(), s.Version(), s.EndpointCount())
	}
	return b.String()
}

func TestBadGossipIsDroppedAndCounted(t *testing.T) {
	f := newMember(t, nil)
	if err := f.reg.Replace(registry.SegmentData{Cluster: registry.Cluster{Name: "peer", Region: "r2"}, Epoch: 5, Version: 3}); err != nil {
		t.Fatal(err)
	}
	d := &delegate{f: f}
	ann := func(cluster string, epoch, version uint64) []byte {
		return encode(msgSegmentAnnounce, &pb.SegmentAnnounce{Cluster: cluster, Epoch: epoch, Version: version, Holder: "peer/r0"})
	}
	for _, tc := range []struct {
		reason string
		msg    []byte
	}{
		{dropMalformed, []byte{wireVersion}},
		{dropMalformed, append([]byte{wireVersion, msgSegmentAnnounce}, 0xff, 0xff, 0xff)},
		{dropOversized, append([]byte{wireVersion, msgSegmentAnnounce}, make([]byte, 4000)...)},
		{dropUnknownVersion, append([]byte{9}, ann("peer", 5, 4)[1:]...)},
		{dropUnknownVersion, append([]byte{wireVersion, 77}, ann("peer", 5, 4)[2:]...)},
		{dropInvalid, ann("Not_A_Cluster", 5, 4)},
		{dropInvalid, ann("peer", 0, 4)},
		{dropInvalid, encode(msgHeartbeat, &pb.Heartbeat{Node: "no-slash", Seq: 1})},
		{dropInvalid, encode(msgMeta, &pb.Meta{Cluster: "x"})},
		{dropReplayed, ann("peer", 5, 1)},
		{dropReplayed, ann("peer", 4, 9)},
	} {
		expectDrop(t, f, tc.reason, func() { d.NotifyMsg(tc.msg) })
	}
	// A push/pull state over its limit.
	big := &pb.PushPullState{Node: "peer/r0"}
	for i := range 100_000 {
		big.Segments = append(big.Segments, &pb.SegmentVersion{Cluster: fmt.Sprintf("c%d", i), Epoch: 1})
	}
	expectDrop(t, f, dropOversized, func() { d.MergeRemoteState(encode(msgPushPull, big), false) })
	// Alive messages with bad metadata are refused (memberlist ignores the
	// node), and counted.
	meta := func(m *pb.Meta) []byte { return encode(msgMeta, m) }
	good := &pb.Meta{Cluster: "peer", ClusterId: make([]byte, clusterIDLen), Region: "r2", GrpcAddr: "127.0.0.1:1", Role: pb.Role_ROLE_LEADER}
	for _, tc := range []struct {
		reason string
		node   string
		meta   []byte
	}{
		{dropMalformed, "peer/r0", []byte{wireVersion, msgMeta, 0xff}},
		{dropInvalid, "peer/r0", meta(&pb.Meta{Cluster: "peer", Region: "r2"})},
		{dropInvalid, "other/r0", meta(good)},
		{dropUnknownVersion, "peer/r0", append([]byte{2}, meta(good)[1:]...)},
	} {
		before := dropped(f, tc.reason)
		if err := d.NotifyAlive(&memberlist.Node{Name: tc.node, Meta: tc.meta}); err == nil {
			t.Errorf("alive %s with bad metadata accepted", tc.node)
		}
		if dropped(f, tc.reason) != before+1 {
			t.Errorf("alive %s: not counted as %s", tc.node, tc.reason)
		}
	}
	if err := d.NotifyAlive(&memberlist.Node{Name: "peer/r0", Meta: meta(good)}); err != nil {
		t.Fatalf("good metadata refused: %v", err)
	}
}

// rogue is a member that answers pulls with whatever the test scripts.
type rogue struct {
	pb.UnimplementedFederationServer
	segment  []*pb.SegmentChunk
	policies []*pb.PolicyChunk
}

func (r *rogue) PullSegment(_ *pb.PullSegmentRequest, s grpc.ServerStreamingServer[pb.SegmentChunk]) error {
	for _, c := range r.segment {
		if err := s.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func (r *rogue) PullPolicies(_ *pb.PullPoliciesRequest, s grpc.ServerStreamingServer[pb.PolicyChunk]) error {
	for _, c := range r.policies {
		if err := s.Send(c); err != nil {
			return err
		}
	}
	return nil
}

// startRogue serves a rogue with the mesh's keys and adds it to f's
// members as "peer/r0".
func startRogue(t *testing.T, f *Federation) *rogue {
	t.Helper()
	r := &rogue{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(f.creds.ServerTLS())))
	pb.RegisterFederationServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	f.members.mu.Lock()
	f.members.m["peer/r0"] = &member{
		name: "peer/r0", state: MemberAlive, verified: true,
		meta: &pb.Meta{Cluster: "peer", ClusterId: make([]byte, clusterIDLen), Region: "r2", GrpcAddr: lis.Addr().String(), Role: pb.Role_ROLE_LEADER},
	}
	f.members.mu.Unlock()
	return r
}

func pbEndpoint(id string, port uint32) *pb.Endpoint {
	return &pb.Endpoint{Namespace: "shop", Service: "web", Id: id, Addresses: []string{"10.0.0.1"}, Port: port, Locality: &pb.Locality{Region: "r2"}}
}

func batch(epoch, version uint64, eps ...*pb.Endpoint) *pb.Batch {
	b := &pb.Batch{Epoch: epoch, Version: version}
	for _, e := range eps {
		b.Changes = append(b.Changes, &pb.Change{Item: &pb.Change_Endpoint{Endpoint: e}})
	}
	return b
}

func TestBadReplicationIsDroppedAndCounted(t *testing.T) {
	f := newMember(t, func(c *Config) { c.Limits.PullBytes = 8 << 10 })
	r := startRogue(t, f)
	if err := f.reg.Replace(registry.SegmentData{Cluster: registry.Cluster{Name: "peer", Region: "r2"}, Epoch: 5, Version: 3}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	peer := &pb.Cluster{Name: "peer", Region: "r2"}
	many := make([]*pb.Endpoint, 1000)
	for i := range many {
		many[i] = pbEndpoint(fmt.Sprintf("e%d", i), 80)
	}
	for _, tc := range []struct {
		name   string
		reason string
		chunks []*pb.SegmentChunk
	}{
		{"unknown protocol", dropUnknownVersion, []*pb.SegmentChunk{{Protocol: 9, Batches: []*pb.Batch{batch(5, 4, pbEndpoint("a", 80))}}}},
		{"replayed batch", dropReplayed, []*pb.SegmentChunk{{Protocol: 1, Batches: []*pb.Batch{batch(5, 2, pbEndpoint("a", 80))}}}},
		{"batch of another epoch", dropReplayed, []*pb.SegmentChunk{{Protocol: 1, Batches: []*pb.Batch{batch(6, 4, pbEndpoint("a", 80))}}}},
		{"invalid endpoint", dropInvalid, []*pb.SegmentChunk{{Protocol: 1, Batches: []*pb.Batch{batch(5, 4, pbEndpoint("a", 0))}}}},
		{"older full copy", dropReplayed, []*pb.SegmentChunk{{Protocol: 1, Full: &pb.SegmentHeader{Cluster: peer, Epoch: 4, Version: 9}}}},
		{"full copy of another cluster", dropInvalid, []*pb.SegmentChunk{{Protocol: 1, Full: &pb.SegmentHeader{Cluster: &pb.Cluster{Name: "home", Region: "r1"}, Epoch: 6}}}},
		{"cut-short full copy", dropMalformed, []*pb.SegmentChunk{{Protocol: 1, Full: &pb.SegmentHeader{Cluster: peer, Epoch: 6, Endpoints: 3}, Endpoints: []*pb.Endpoint{pbEndpoint("a", 80)}}}},
		{"entries without a header", dropMalformed, []*pb.SegmentChunk{{Protocol: 1, Endpoints: []*pb.Endpoint{pbEndpoint("a", 80)}}}},
		{"full copy with an invalid endpoint", dropInvalid, []*pb.SegmentChunk{{Protocol: 1, Full: &pb.SegmentHeader{Cluster: peer, Epoch: 6, Endpoints: 1}, Endpoints: []*pb.Endpoint{pbEndpoint("a", 0)}}}},
		{"oversized", dropOversized, []*pb.SegmentChunk{{Protocol: 1, Batches: []*pb.Batch{batch(5, 4, many...)}}}},
		{"too many entries", dropOversized, []*pb.SegmentChunk{{Protocol: 1, Full: &pb.SegmentHeader{Cluster: peer, Epoch: 6, Endpoints: 2_000_000}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.segment = tc.chunks
			expectDrop(t, f, tc.reason, func() {
				if err := f.pullSegmentFrom(ctx, "peer/r0", "peer"); err == nil {
					t.Error("pull accepted")
				}
			})
		})
	}
	// The process keeps serving: a good batch still applies.
	r.segment = []*pb.SegmentChunk{{Protocol: 1, Batches: []*pb.Batch{batch(5, 4, pbEndpoint("a", 80))}}}
	if err := f.pullSegmentFrom(ctx, "peer/r0", "peer"); err != nil || f.haveVersion("peer") != (segVer{5, 4}) {
		t.Fatalf("good batch: %v, now at %v", err, f.haveVersion("peer"))
	}

	goodPolicy := &pb.Policy{Kind: "FailoverPolicy", Namespace: "shop", Name: "web", Spec: []byte("{}"), Stamp: 1 << 40, Origin: "peer/r0"}
	for _, tc := range []struct {
		name   string
		reason string
		chunks []*pb.PolicyChunk
	}{
		{"no last chunk", dropMalformed, []*pb.PolicyChunk{{Protocol: 1, Policies: []*pb.Policy{goodPolicy}}}},
		{"chunk after the last", dropMalformed, []*pb.PolicyChunk{{Protocol: 1, Last: true}, {Protocol: 1}}},
		{"unknown protocol", dropUnknownVersion, []*pb.PolicyChunk{{Protocol: 2, Last: true}}},
		{"invalid record", dropInvalid, []*pb.PolicyChunk{{Protocol: 1, Last: true, Policies: []*pb.Policy{{Kind: "lower", Name: "x", Stamp: 1, Origin: "peer/r0"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.policies = tc.chunks
			before := dropped(f, tc.reason)
			_ = f.pullPoliciesFrom(ctx, "peer/r0", policy.Vector{})
			if got := dropped(f, tc.reason); got != before+1 {
				t.Errorf("dropped{reason=%s}: %v, want %v", tc.reason, got, before+1)
			}
			if f.pol.Snapshot().Len() != 0 {
				t.Error("a bad policy pull stored something")
			}
		})
	}
}

// The federation gRPC server refuses unknown protocols and invalid
// requests with a code, and counts them.
func TestServerRefusesBadRequests(t *testing.T) {
	f := newMember(t, nil)
	conn, err := grpc.NewClient("passthrough:///"+f.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(f.creds.ClientTLS())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewFederationClient(conn)
	ctx := context.Background()
	recv := func(s grpc.ServerStreamingClient[pb.SegmentChunk], err error) error {
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	before := dropped(f, dropUnknownVersion)
	if err := recv(c.PullSegment(ctx, &pb.PullSegmentRequest{Protocol: 2, Cluster: "home"})); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("protocol 2: %v", err)
	}
	if dropped(f, dropUnknownVersion) != before+1 {
		t.Fatal("not counted")
	}
	if err := recv(c.PullSegment(ctx, &pb.PullSegmentRequest{Protocol: 1, Cluster: "Bad_Name"})); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad cluster: %v", err)
	}
	if err := recv(c.PullSegment(ctx, &pb.PullSegmentRequest{Protocol: 1, Cluster: "nowhere"})); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown cluster: %v", err)
	}
	ps, err := c.PullPolicies(ctx, &pb.PullPoliciesRequest{Protocol: 1, Vector: []*pb.VectorEntry{{Origin: "no slash", Stamp: 1}}})
	if err == nil {
		_, err = ps.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad vector: %v", err)
	}
}

// Only holders of a gossip key complete the federation's TLS handshake;
// a ring with the old and the new key accepts both during a rotation.
func TestKeyringGatesReplication(t *testing.T) {
	k1, k2 := testKey, []byte("fedcba9876543210fedcba9876543210")
	ring := func(keys ...[]byte) *keyringCredentials {
		r, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			t.Fatal(err)
		}
		return newKeyringCredentials(r)
	}
	handshake := func(server, client *keyringCredentials) error {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		errc := make(chan error, 1)
		go func() {
			conn, err := lis.Accept()
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			s := tls.Server(conn, server.ServerTLS())
			err = s.Handshake()
			if err == nil {
				// TLS 1.3 reports a refused client certificate on the
				// first read.
				_, err = s.Read(make([]byte, 1))
			}
			errc <- err
		}()
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := tls.Client(conn, client.ClientTLS())
		cerr := c.Handshake()
		if cerr == nil {
			_, cerr = c.Write([]byte{1})
		}
		serr := <-errc
		if cerr != nil {
			return cerr
		}
		return serr
	}
	if err := handshake(ring(k1), ring(k1)); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := handshake(ring(k1), ring(k2)); err == nil || !strings.Contains(err.Error(), "gossip keyring") {
		t.Fatalf("different keys: %v", err)
	}
	if err := handshake(ring(k1, k2), ring(k2, k1)); err != nil {
		t.Fatalf("rotation (either key accepted): %v", err)
	}
}
