package federation

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// Config configures one member of the federation: one meridiand replica.
type Config struct {
	// Cluster describes this cluster. Required. Its name is what the
	// split-brain guard protects: one cluster identity per name mesh-wide.
	Cluster registry.Cluster
	// Replica names this meridiand among its cluster's replicas; default
	// the host name. The gossip node name is "CLUSTER/REPLICA".
	Replica string
	// Registry is the global registry this member keeps. Required. The
	// federation owns the epoch of the local segment and replaces it when
	// this replica becomes leader; discovery writes the local segment only
	// from OnLead.
	Registry *registry.Registry
	// Store is the cluster's etcd: the local segment for a fast restart,
	// policies, the cluster identity and leader election among replicas.
	// Nil keeps everything in memory with this replica always the leader
	// (benchmarks and tests of gossip alone).
	Store *store.Store

	// GossipAddr is where gossip listens ("host:port", UDP and TCP on the
	// same port); default "0.0.0.0:7946", memberlist's port. Port 0 picks
	// a free port.
	GossipAddr string
	// AdvertiseAddr is the IP other members reach this one at, when it
	// differs from the listen address (NAT, 0.0.0.0).
	AdvertiseAddr string
	// Seeds are gossip addresses ("host:port") of members to join through.
	// Any one reachable seed is enough; they are retried every
	// Gossip.RejoinInterval while not alive, which also heals partitions.
	Seeds []string
	// Keys is the gossip keyring: 16, 24 or 32-byte AES keys, the first
	// one used for sending, all of them accepted (rotation). Required
	// unless Insecure. The keys also gate the federation gRPC service (see
	// Credentials) until certificate-based identity replaces them.
	Keys [][]byte
	// Insecure allows running without keys: gossip in clear text and
	// replication without TLS. For throwaway labs only.
	Insecure bool
	// Label separates meshes that share a network: members with another
	// label are ignored. Default "meridian".
	Label string

	// GRPCAddr is where the Federation gRPC service listens; default
	// ":7947". Port 0 picks a free port.
	GRPCAddr string
	// AdvertiseGRPCAddr is what other members dial; default the listen
	// address, with the advertise address as host when it is unspecified.
	AdvertiseGRPCAddr string
	// APIAddr is the address of this replica's own API (meridiand's gRPC:
	// Workload API, policy API), carried in its metadata so that a
	// follower can send clients of what only the leader serves to the
	// leader (LeaderAPIAddr). An unspecified host is replaced by the
	// advertise address. Optional.
	APIAddr string
	// Credentials secures the Federation gRPC. Nil derives mutual TLS from
	// the gossip keyring: only holders of a key can pull or serve.
	Credentials Credentials
	// Authenticator checks the identity a member proves in the TLS
	// handshake against the cluster it claims. Nil: holding a gossip key is
	// proof enough.
	Authenticator Authenticator

	// Gossip tunes failure detection and gossip timing; the zero value
	// means LAN(). Use WAN() between regions, Local() on loopback labs.
	Gossip Gossip

	// OnLead runs while this replica leads its cluster, with a context
	// cancelled when leadership ends: the place to run discovery, the one
	// writer of the local segment. Nil: nothing runs.
	OnLead func(ctx context.Context)

	// Limits on what peers may send; zero means the default.
	Limits Limits

	// WrapTransport, when set, wraps the gossip transport (tests cut links
	// with it; a lab could add latency).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// Dialer, when set, opens the connections of the Federation gRPC
	// client.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)

	// Logger should carry the "cluster" attribute (meridiand's does); the
	// federation adds "component" and "node".
	Logger *slog.Logger
	// Metrics receives the federation's metrics; nil keeps them private.
	Metrics prometheus.Registerer
}

// Gossip holds the timing of membership and replication. Start from a
// preset and change what you need.
type Gossip struct {
	// Memberlist is the failure detector's and gossip's timing. The
	// identity, delegate, transport, keyring and logging fields are set by
	// the federation and ignored here.
	Memberlist *memberlist.Config
	// HeartbeatInterval is how often this member gossips a heartbeat.
	// Heartbeats tell every member when each other was last heard from,
	// through any path: the age of stale data.
	HeartbeatInterval time.Duration
	// SuspectAfter: a member not heard from for this long, and not yet
	// declared dead by memberlist, is Suspect (its cluster's endpoints turn
	// stale). Memberlist keeps its own suspicion to itself; this is the
	// federation's.
	SuspectAfter time.Duration
	// StaleAfter: a cluster whose control plane is alive by gossip but
	// whose segment this member has been unable to bring up to date for
	// this long is Unreachable (its endpoints turn stale).
	StaleAfter time.Duration
	// RejoinInterval is how often seeds and recently failed members that
	// are not alive are joined again; this heals partitions.
	RejoinInterval time.Duration
	// StatusInterval is how often member states (suspect) are folded into
	// the registry's cluster statuses.
	StatusInterval time.Duration
	// MetaInterval bounds how often this member's metadata (segment
	// version, policy horizon) is re-advertised; announcements carry the
	// fast path, metadata is the slow, complete one.
	MetaInterval time.Duration
	// RetryInterval is how often pulls that failed are retried.
	RetryInterval time.Duration
	// PullTimeout bounds one pull from one member.
	PullTimeout time.Duration
	// LeaseTTL is the etcd lease of the cluster's leader: a leader that
	// dies is replaced within about this long.
	LeaseTTL time.Duration
	// CollectInterval is how often policy tombstones are collected.
	CollectInterval time.Duration
	// ForgetAfter: a member dead or gone for this long is forgotten (and
	// its cluster removed from the registry once no member is left), so it
	// no longer holds back tombstone collection. As Consul's
	// reconnect_timeout.
	ForgetAfter time.Duration
}

// LAN is the preset inside one region: memberlist's DefaultLANConfig with
// faster failure detection and gossip, since a control plane that is down
// means endpoints to fail over.
func LAN() Gossip {
	ml := memberlist.DefaultLANConfig()
	ml.ProbeInterval = 500 * time.Millisecond  // LAN default 1s
	ml.ProbeTimeout = 250 * time.Millisecond   // LAN default 500ms; a LAN RTT p99 is far below
	ml.SuspicionMult = 3                       // LAN default 4: suspect for 3·log10(N+1)·probe interval
	ml.GossipInterval = 100 * time.Millisecond // LAN default 200ms: announcements reach everyone sooner
	ml.GossipNodes = 4                         // LAN default 3
	ml.PushPullInterval = 15 * time.Second     // LAN default 30s: anti-entropy for lost announcements
	ml.GossipToTheDeadTime = 30 * time.Second
	return Gossip{
		Memberlist:        ml,
		HeartbeatInterval: 500 * time.Millisecond,
		SuspectAfter:      1500 * time.Millisecond,
		StaleAfter:        3 * time.Second,
		RejoinInterval:    5 * time.Second,
		StatusInterval:    100 * time.Millisecond,
		MetaInterval:      2 * time.Second,
		RetryInterval:     500 * time.Millisecond,
		PullTimeout:       10 * time.Second,
		LeaseTTL:          5 * time.Second,
		CollectInterval:   time.Minute,
		ForgetAfter:       72 * time.Hour,
	}
}

// WAN is the preset between regions: memberlist's DefaultWANConfig (5s
// probes, 3s probe timeout, suspicion 6·log10(N+1) probes) with gossip at
// 200ms instead of 500ms.
func WAN() Gossip {
	g := LAN()
	ml := memberlist.DefaultWANConfig()
	ml.GossipInterval = 200 * time.Millisecond // WAN default 500ms
	g.Memberlist = ml
	g.HeartbeatInterval = 2 * time.Second
	g.SuspectAfter = 8 * time.Second
	g.StaleAfter = 15 * time.Second
	g.RejoinInterval = 15 * time.Second
	g.StatusInterval = 250 * time.Millisecond
	g.MetaInterval = 5 * time.Second
	g.RetryInterval = 2 * time.Second
	g.PullTimeout = 30 * time.Second
	g.LeaseTTL = 10 * time.Second
	return g
}

// Local is the preset for clusters on one machine (the lab, tests):
// memberlist's DefaultLocalConfig with faster probes and gossip.
func Local() Gossip {
	g := LAN()
	ml := memberlist.DefaultLocalConfig()
	ml.ProbeInterval = 300 * time.Millisecond // Local default 1s
	ml.ProbeTimeout = 200 * time.Millisecond
	ml.SuspicionMult = 3
	ml.GossipInterval = 50 * time.Millisecond // Local default 100ms
	ml.GossipNodes = 4
	ml.PushPullInterval = 5 * time.Second // Local default 15s
	ml.GossipToTheDeadTime = 10 * time.Second
	g.Memberlist = ml
	g.HeartbeatInterval = 200 * time.Millisecond
	g.SuspectAfter = 800 * time.Millisecond
	g.StaleAfter = 2 * time.Second
	g.RejoinInterval = time.Second
	g.StatusInterval = 50 * time.Millisecond
	g.MetaInterval = time.Second
	g.RetryInterval = 200 * time.Millisecond
	g.PullTimeout = 5 * time.Second
	g.LeaseTTL = 2 * time.Second
	g.CollectInterval = 5 * time.Second
	return g
}

// Preset returns the preset of a name: "lan" (or ""), "wan" or "local".
func Preset(name string) (Gossip, error) {
	switch strings.ToLower(name) {
	case "", "lan":
		return LAN(), nil
	case "wan":
		return WAN(), nil
	case "local":
		return Local(), nil
	}
	return Gossip{}, fmt.Errorf("federation: preset %q: want lan, wan or local", name)
}

func (g Gossip) withDefaults() Gossip {
	d := LAN()
	if g.Memberlist == nil {
		g.Memberlist = d.Memberlist
	}
	for _, p := range []struct{ v, d *time.Duration }{
		{&g.HeartbeatInterval, &d.HeartbeatInterval}, {&g.SuspectAfter, &d.SuspectAfter}, {&g.StaleAfter, &d.StaleAfter}, {&g.RejoinInterval, &d.RejoinInterval}, {&g.StatusInterval, &d.StatusInterval},
		{&g.MetaInterval, &d.MetaInterval}, {&g.RetryInterval, &d.RetryInterval}, {&g.PullTimeout, &d.PullTimeout},
		{&g.LeaseTTL, &d.LeaseTTL}, {&g.CollectInterval, &d.CollectInterval}, {&g.ForgetAfter, &d.ForgetAfter},
	} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	return g
}

// Limits bound what a peer may make this member hold or process. Messages
// beyond them are dropped and counted, never applied in part.
type Limits struct {
	// GossipMessage bounds one announcement; default 2 KiB.
	GossipMessage int
	// PushPullState bounds the state exchanged on a full gossip sync;
	// default 1 MiB.
	PushPullState int
	// PullBytes bounds one pull of a segment or of policies; default
	// 256 MiB.
	PullBytes int64
	// SegmentEntries bounds the services plus endpoints of one full copy;
	// default 1,000,000.
	SegmentEntries int
	// ChunkBytes is the size this member cuts its replies into; default
	// 1 MiB (gRPC's limit is 4 MiB).
	ChunkBytes int
}

func (l Limits) withDefaults() Limits {
	if l.GossipMessage <= 0 {
		l.GossipMessage = 2 << 10
	}
	if l.PushPullState <= 0 {
		l.PushPullState = 1 << 20
	}
	if l.PullBytes <= 0 {
		l.PullBytes = 256 << 20
	}
	if l.SegmentEntries <= 0 {
		l.SegmentEntries = 1_000_000
	}
	if l.ChunkBytes <= 0 {
		l.ChunkBytes = 1 << 20
	}
	return l
}

// validate fills defaults and checks the config, naming each bad field.
func (c *Config) validate() error {
	var errs field.ErrorList
	errs = append(errs, registry.ValidateCluster(c.Cluster, field.NewPath("cluster"))...)
	if c.Replica == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("federation: replica: no name given and no host name: %w", err)
		}
		c.Replica = strings.ToLower(h)
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.Replica) {
		errs = append(errs, field.Invalid(field.NewPath("replica"), c.Replica, msg))
	}
	if c.Registry == nil {
		errs = append(errs, field.Required(field.NewPath("registry"), ""))
	}
	if c.GossipAddr == "" {
		c.GossipAddr = "0.0.0.0:7946"
	}
	if _, _, err := net.SplitHostPort(c.GossipAddr); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("gossipAddr"), c.GossipAddr, err.Error()))
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = ":7947"
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("grpcAddr"), c.GRPCAddr, err.Error()))
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, field.Invalid(field.NewPath("advertiseAddr"), c.AdvertiseAddr, "must be an IP address"))
	}
	if c.Label == "" {
		c.Label = "meridian"
	}
	for i, s := range c.Seeds {
		if err := registry.ValidateHostPort(s); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("seeds").Index(i), s, err.Error()))
		}
	}
	if len(c.Keys) == 0 && !c.Insecure {
		errs = append(errs, field.Required(field.NewPath("keys"), "gossip needs an encryption key (or Insecure for a throwaway lab)"))
	}
	for i, k := range c.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("keys").Index(i), fmt.Sprintf("%d bytes", len(k)), "must be 16, 24 or 32 bytes"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("federation: %w", errs.ToAggregate())
	}
	c.Gossip = c.Gossip.withDefaults()
	c.Limits = c.Limits.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return nil
}
