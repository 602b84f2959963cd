package federation

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/registry"
)

// Status reports what this member knows of the federation now: every
// cluster with its state, staleness and segment version, every member, the
// policy store, the bytes on the wire and the messages dropped.
func (f *Federation) Status() *pb.Status {
	now := time.Now()
	own := f.haveVersion(f.cfg.Cluster.Name)
	st := &pb.Status{
		Node: f.node, Cluster: f.cfg.Cluster.Name, Leader: f.leading.Load(), Epoch: own.epoch, Version: own.version,
		BytesSent: f.m.sent.Load(), BytesReceived: f.m.received.Load(), DroppedMessages: f.m.droppedTotal.Load(),
	}
	for _, m := range f.members.snapshot() {
		st.Members = append(st.Members, &pb.MemberStatus{
			Name: m.name, Cluster: m.meta.GetCluster(), Role: strings.TrimPrefix(strings.ToLower(m.meta.GetRole().String()), "role_"),
			State: string(m.state), Since: timestamp(m.since), LastSeen: timestamp(m.lastAlive),
			GossipAddr: m.addr, GrpcAddr: m.meta.GetGrpcAddr(), Epoch: m.meta.GetEpoch(), Version: m.meta.GetVersion(), Verified: m.verified,
		})
	}
	view := f.reg.View()
	for _, name := range view.Clusters() {
		seg := view.Segment(name)
		cs := view.Status(name)
		_, lag := f.repl.behind(name)
		c := &pb.ClusterStatus{
			Name: name, Region: seg.Cluster().Region, State: cs.State.String(), Since: timestamp(cs.Since), LastSeen: timestamp(cs.LastSeen),
			Epoch: seg.Epoch(), Version: seg.Version(), LagVersions: lag,
			Services: uint32(seg.ServiceCount()), Endpoints: uint32(seg.EndpointCount()),
		}
		if cs.State != registry.Alive && !cs.LastSeen.IsZero() {
			c.StaleFor = durationpb.New(now.Sub(cs.LastSeen).Round(time.Millisecond))
		}
		st.Clusters = append(st.Clusters, c)
	}
	snap := f.pol.Snapshot()
	st.Policies = &pb.PolicyStatus{Live: uint32(snap.Len()), Tombstones: uint32(snap.Tombstones()), Horizon: f.pol.Horizon().String()}
	return st
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Handler serves /debug/federation: the Status as tables, or as JSON with
// ?format=json or "Accept: application/json".
func (f *Federation) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st := f.Status()
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(st)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(b, '\n'))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		WriteStatus(w, st)
	})
}

// WriteStatus prints a Status as tables: what /debug/federation shows and
// `meridianctl status` prints.
func WriteStatus(w io.Writer, st *pb.Status) {
	role := "follower"
	if st.GetLeader() {
		role = "leader"
	}
	fmt.Fprintf(w, "%s (cluster %s, %s), own segment %d.%d\n\n", st.GetNode(), st.GetCluster(), role, st.GetEpoch(), st.GetVersion())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREGION\tSTATE\tSINCE\tSTALE FOR\tSEGMENT\tLAG\tSERVICES\tENDPOINTS")
	for _, c := range st.GetClusters() {
		stale := "-"
		if c.GetStaleFor() != nil {
			stale = c.GetStaleFor().AsDuration().Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d.%d\t%d\t%d\t%d\n", c.GetName(), c.GetRegion(), c.GetState(), ago(c.GetSince()), stale,
			c.GetEpoch(), c.GetVersion(), c.GetLagVersions(), c.GetServices(), c.GetEndpoints())
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tSINCE\tLAST SEEN\tGOSSIP\tFEDERATION GRPC\tVERIFIED")
	for _, m := range st.GetMembers() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", m.GetName(), m.GetRole(), m.GetState(), ago(m.GetSince()), ago(m.GetLastSeen()),
			m.GetGossipAddr(), m.GetGrpcAddr(), m.GetVerified())
	}
	tw.Flush()
	p := st.GetPolicies()
	fmt.Fprintf(w, "\npolicies: %d live, %d tombstones, collected up to %s\n", p.GetLive(), p.GetTombstones(), p.GetHorizon())
	fmt.Fprintf(w, "wire: %d bytes sent, %d received; %d messages dropped\n", st.GetBytesSent(), st.GetBytesReceived(), st.GetDroppedMessages())
}

func ago(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return time.Since(t.AsTime()).Round(time.Second).String() + " ago"
}

// RegisterStatus serves the FederationStatus service (what `meridianctl
// status` asks) on a gRPC server meant for clients, such as meridiand's
// shared one.
func (f *Federation) RegisterStatus(s *grpc.Server) {
	pb.RegisterFederationStatusServer(s, statusServer{f: f})
}

type statusServer struct {
	pb.UnimplementedFederationStatusServer
	f *Federation
}

func (s statusServer) GetStatus(context.Context, *pb.GetStatusRequest) (*pb.Status, error) {
	return s.f.Status(), nil
}
