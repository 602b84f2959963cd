package federation

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/validation/field"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/registry"
)

// FuzzDecodeGossip feeds arbitrary bytes to the gossip decoder, as a
// packet from the network would: it must never panic, and what it accepts
// must be valid and survive a round trip.
func FuzzDecodeGossip(f *testing.F) {
	for _, m := range []struct {
		typ byte
		msg proto.Message
	}{
		{msgMeta, &pb.Meta{Cluster: "east", ClusterId: make([]byte, clusterIDLen), Region: "us-east-1", GrpcAddr: "10.0.0.1:7947", Role: pb.Role_ROLE_LEADER, Epoch: 7, Version: 3}},
		{msgSegmentAnnounce, &pb.SegmentAnnounce{Cluster: "east", Epoch: 7, Version: 3, Holder: "west/r0"}},
		{msgPolicyAnnounce, &pb.PolicyAnnounce{Origin: "east/r0", Stamp: 1 << 30, Holder: "west/r1"}},
		{msgPushPull, &pb.PushPullState{Node: "east/r0", Segments: []*pb.SegmentVersion{{Cluster: "west", Epoch: 1, Version: 9}}, PolicyVector: []*pb.VectorEntry{{Origin: "west/r0", Stamp: 5}}}},
		{msgHeartbeat, &pb.Heartbeat{Node: "east/r0", Seq: 99, Leaving: true}},
	} {
		f.Add(encode(m.typ, m.msg))
	}
	f.Add([]byte{})
	f.Add([]byte{wireVersion, 99})
	f.Add([]byte{2, msgMeta, 0x0a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := decodeGossip(data, 2048)
		if err != nil {
			if reasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if err := validateGossip(msg); err != nil {
			t.Fatalf("accepted an invalid message: %v", err)
		}
		again, err := decodeGossip(encode(data[1], msg), 2048)
		if err != nil || !proto.Equal(msg, again) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzSegmentChunk applies an arbitrary replication chunk — batches or a
// full copy — to a registry, as a pull does: whatever the registry refuses
// leaves it as it was, and whatever it keeps is valid.
func FuzzSegmentChunk(f *testing.F) {
	good := &pb.SegmentChunk{Protocol: 1, Batches: []*pb.Batch{batch(1, 1, pbEndpoint("a", 80))}}
	full := &pb.SegmentChunk{Protocol: 1, Full: &pb.SegmentHeader{Cluster: &pb.Cluster{Name: "c", Region: "r"}, Epoch: 2, Endpoints: 1}, Endpoints: []*pb.Endpoint{pbEndpoint("b", 81)}}
	del := &pb.SegmentChunk{Protocol: 1, Batches: []*pb.Batch{{Epoch: 1, Version: 1, Changes: []*pb.Change{{Delete: true, Item: &pb.Change_Service{Service: &pb.Service{Namespace: "shop", Name: "web"}}}}}}}
	for _, c := range []*pb.SegmentChunk{good, full, del} {
		b, _ := proto.Marshal(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var chunk pb.SegmentChunk
		if proto.Unmarshal(data, &chunk) != nil {
			return
		}
		reg := registry.New(registry.Options{})
		if err := reg.Replace(registry.SegmentData{Cluster: registry.Cluster{Name: "c", Region: "r"}, Epoch: 1}); err != nil {
			t.Fatal(err)
		}
		for _, b := range chunk.GetBatches() {
			before := reg.View()
			if err := reg.ApplyBatch("c", batchFromPB(b)); err != nil && reg.View() != before {
				t.Fatalf("refused batch changed the view: %v", err)
			}
		}
		if h := chunk.GetFull(); h != nil {
			d := registry.SegmentData{Cluster: clusterFromPB(h.GetCluster()), Epoch: h.GetEpoch(), Version: h.GetVersion()}
			for _, s := range chunk.GetServices() {
				d.Services = append(d.Services, serviceFromPB(s))
			}
			for _, e := range chunk.GetEndpoints() {
				d.Endpoints = append(d.Endpoints, endpointFromPB(e))
			}
			before := reg.View()
			if err := reg.Replace(d); err != nil && reg.View() != before {
				t.Fatalf("refused full copy changed the view: %v", err)
			}
		}
		v := reg.View()
		for _, c := range v.Clusters() {
			v.Segment(c).EachEndpoint(func(e *registry.Endpoint) bool {
				if errs := registry.ValidateEndpoint(e, field.NewPath("e")); len(errs) > 0 {
					t.Fatalf("invalid endpoint kept: %v", errs)
				}
				return true
			})
		}
	})
}

// FuzzPolicyChunk applies an arbitrary policy chunk to a store: invalid
// records are rejected one by one and never stored.
func FuzzPolicyChunk(f *testing.F) {
	good := &pb.PolicyChunk{Protocol: 1, Last: true, Policies: []*pb.Policy{{Kind: "FailoverPolicy", Namespace: "shop", Name: "web", Spec: []byte("{}"), Stamp: 1 << 40, Origin: "east/r0"}},
		Vector: []*pb.VectorEntry{{Origin: "east/r0", Stamp: 1 << 41}}}
	tomb := &pb.PolicyChunk{Protocol: 1, Last: true, Full: true, Horizon: 5, Policies: []*pb.Policy{{Kind: "FailoverPolicy", Name: "gone", Stamp: 9, Origin: "east/r0", Deleted: true}}}
	for _, c := range []*pb.PolicyChunk{good, tomb} {
		b, _ := proto.Marshal(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var chunk pb.PolicyChunk
		if proto.Unmarshal(data, &chunk) != nil {
			return
		}
		s, err := policy.Open(context.Background(), policy.Options{Node: "home/r0"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		in := policy.Sync{Vector: vectorFromPB(chunk.GetVector()), Horizon: policy.Timestamp(chunk.GetHorizon()), Full: chunk.GetFull()}
		for _, p := range chunk.GetPolicies() {
			in.Records = append(in.Records, policyFromPB(p))
		}
		if _, err := s.Apply(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Snapshot().List("") {
			if errs := r.Key.Validate(field.NewPath("key")); len(errs) > 0 || r.Origin == "" || r.Stamp == 0 {
				t.Fatalf("invalid record stored: %+v", r)
			}
		}
	})
}
