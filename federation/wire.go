package federation

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/registry"
)

// Every gossip payload (metadata, announcements, push/pull state) is
//
//	byte 0: wire version (1)
//	byte 1: message type
//	rest:   the protobuf message of that type (federationpb)
//
// so that a member can drop what it does not understand before parsing
// it, and a later version can change any message without confusing this
// one. The Federation gRPC service carries the same version in each
// request and reply (protocol field).
const (
	wireVersion = 1

	msgMeta            byte = 1
	msgSegmentAnnounce byte = 2
	msgPolicyAnnounce  byte = 3
	msgPushPull        byte = 4
	msgHeartbeat       byte = 5
)

// Reasons a message from the network is dropped; the label values of
// meridian_federation_dropped_messages_total.
const (
	dropMalformed      = "malformed"       // not parseable
	dropOversized      = "oversized"       // over a size limit
	dropUnknownVersion = "unknown_version" // a wire or protocol version this member does not speak
	dropInvalid        = "invalid"         // parses, but a field is invalid
	dropReplayed       = "replayed"        // older than what this member holds, or not the next batch
	dropSplitBrain     = "split_brain"     // claims a cluster another identity holds
	dropUnverified     = "unverified"      // from a member whose identity is not (yet) verified
)

// wireError is a refused message: the reason (a metric label) and why.
type wireError struct {
	reason string
	err    error
}

func (e *wireError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *wireError) Unwrap() error { return e.err }

func refuse(reason string, format string, args ...any) error {
	return &wireError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the drop reason of an error, dropInvalid when it has
// none (validation errors from the registry).
func reasonOf(err error) string {
	var we *wireError
	if errors.As(err, &we) {
		return we.reason
	}
	return dropInvalid
}

func encode(typ byte, m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("federation: encode %T: %v", m, err)) // only on a programming error
	}
	return append([]byte{wireVersion, typ}, b...)
}

// decodeGossip parses and validates one gossip payload of at most limit
// bytes. The result is a *federationpb.Meta, *SegmentAnnounce,
// *PolicyAnnounce, *PushPullState or *Heartbeat.
func decodeGossip(buf []byte, limit int) (proto.Message, error) {
	if len(buf) > limit {
		return nil, refuse(dropOversized, "%d bytes, limit %d", len(buf), limit)
	}
	if len(buf) < 2 {
		return nil, refuse(dropMalformed, "%d bytes, shorter than the header", len(buf))
	}
	if buf[0] != wireVersion {
		return nil, refuse(dropUnknownVersion, "wire version %d, this member speaks %d", buf[0], wireVersion)
	}
	var m proto.Message
	switch buf[1] {
	case msgMeta:
		m = &federationpb.Meta{}
	case msgSegmentAnnounce:
		m = &federationpb.SegmentAnnounce{}
	case msgPolicyAnnounce:
		m = &federationpb.PolicyAnnounce{}
	case msgPushPull:
		m = &federationpb.PushPullState{}
	case msgHeartbeat:
		m = &federationpb.Heartbeat{}
	default:
		return nil, refuse(dropUnknownVersion, "message type %d", buf[1])
	}
	if err := proto.Unmarshal(buf[2:], m); err != nil {
		return nil, refuse(dropMalformed, "%v", err)
	}
	if err := validateGossip(m); err != nil {
		return nil, refuse(dropInvalid, "%v", err)
	}
	return m, nil
}

func validateGossip(m proto.Message) error {
	switch m := m.(type) {
	case *federationpb.Meta:
		return validateMeta(m)
	case *federationpb.SegmentAnnounce:
		return errors.Join(validClusterName(m.GetCluster()), validNodeName(m.GetHolder()), validEpoch(m.GetEpoch()))
	case *federationpb.PolicyAnnounce:
		if m.GetStamp() == 0 {
			return errors.New("stamp: required")
		}
		return errors.Join(validNodeName(m.GetOrigin()), validNodeName(m.GetHolder()))
	case *federationpb.Heartbeat:
		if m.GetSeq() == 0 {
			return errors.New("seq: required")
		}
		return validNodeName(m.GetNode())
	case *federationpb.PushPullState:
		errs := []error{validNodeName(m.GetNode())}
		for _, s := range m.GetSegments() {
			errs = append(errs, validClusterName(s.GetCluster()), validEpoch(s.GetEpoch()))
		}
		for _, v := range m.GetPolicyVector() {
			errs = append(errs, validNodeName(v.GetOrigin()))
		}
		return errors.Join(errs...)
	}
	return nil
}

func validateMeta(m *federationpb.Meta) error {
	errs := []error{validClusterName(m.GetCluster())}
	if len(m.GetClusterId()) != clusterIDLen {
		errs = append(errs, fmt.Errorf("cluster_id: %d bytes, want %d", len(m.GetClusterId()), clusterIDLen))
	}
	if msgs := validation.IsValidLabelValue(m.GetRegion()); m.GetRegion() == "" || len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("region %q: must be a non-empty label value", m.GetRegion()))
	}
	if msgs := validation.IsValidLabelValue(m.GetNetwork()); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("network %q: %s", m.GetNetwork(), msgs[0]))
	}
	if err := registry.ValidateHostPort(m.GetGrpcAddr()); err != nil {
		errs = append(errs, fmt.Errorf("grpc_addr %q: %w", m.GetGrpcAddr(), err))
	}
	if r := m.GetRole(); r != federationpb.Role_ROLE_LEADER && r != federationpb.Role_ROLE_FOLLOWER {
		errs = append(errs, fmt.Errorf("role %v: want leader or follower", r))
	}
	return errors.Join(errs...)
}

func validClusterName(s string) error {
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		return fmt.Errorf("cluster %q: %s", s, msgs[0])
	}
	return nil
}

func validEpoch(e uint64) error {
	if e == 0 {
		return errors.New("epoch: required")
	}
	return nil
}

// validNodeName checks "CLUSTER/REPLICA".
func validNodeName(s string) error {
	c, r, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("node %q: want CLUSTER/REPLICA", s)
	}
	if err := validClusterName(c); err != nil {
		return fmt.Errorf("node %q: %w", s, err)
	}
	if msgs := validation.IsDNS1123Subdomain(r); len(msgs) > 0 {
		return fmt.Errorf("node %q: replica: %s", s, msgs[0])
	}
	return nil
}

// clusterOf returns the cluster part of a node name.
func clusterOf(node string) string {
	c, _, _ := strings.Cut(node, "/")
	return c
}

// advertisedGRPC turns a listen address into one peers can dial: an
// unspecified host becomes the advertise IP (or loopback).
// advertisedAPI is addr with an empty or unspecified host replaced as
// advertisedGRPC does; "" stays "".
func advertisedAPI(addr, advertiseIP string) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("federation: apiAddr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr, nil
	}
	host = advertiseIP
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

func advertisedGRPC(listen net.Addr, advertiseIP string) string {
	tcp, ok := listen.(*net.TCPAddr)
	if !ok {
		return listen.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = advertiseIP
		if host == "" {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
