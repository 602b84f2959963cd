package federation

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/registry"
)

const (
	protocolVersion = 1 // of the Federation gRPC messages
	clusterIDLen    = 16
)

// Federation is one member of the mesh's federation: one meridiand
// replica. Build it with New, run it with Run.
type Federation struct {
	cfg       Config
	log       *slog.Logger
	reg       *registry.Registry
	pol       *policy.Store
	m         *metrics
	node      string // "CLUSTER/REPLICA"
	clusterID []byte

	transport  *countingTransport
	gossipPort int
	grpcLis    net.Listener
	grpcAddr   string // advertised
	apiAddr    string // advertised, "" when not given
	grpcSrv    *grpc.Server
	creds      Credentials // nil when insecure
	keyring    *memberlist.Keyring
	conns      *connPool

	ml    atomic.Pointer[memberlist.Memberlist]
	bcast *memberlist.TransmitLimitedQueue // announcements
	beats *memberlist.TransmitLimitedQueue // heartbeats
	meta  atomic.Pointer[[]byte]

	members *memberTable
	repl    *replicator

	// ownMu serializes the federation's writes to the local segment:
	// promotion, demotion and a follower's pulls of its own cluster.
	ownMu       sync.Mutex
	leading     atomic.Bool
	followed    segVer        // the local segment as the federation last left it while following; guarded by ownMu
	horizon     atomic.Uint64 // advertised policy coverage
	liveMembers atomic.Int64
	hbSeq       atomic.Uint64
	leaving     atomic.Bool
	metaNow     chan struct{} // 1-buffered: re-advertise metadata now

	runOnce   sync.Once
	closeOnce sync.Once
}

// New validates the config, loads what the cluster's etcd holds (cluster
// identity, policies) and opens the gossip and gRPC listeners, so that
// their addresses are known (GossipAddr, GRPCAddr) and the policy store is
// usable before Run. Close releases everything when Run is never called.
func New(cfg Config) (*Federation, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Federation{
		cfg: cfg, reg: cfg.Registry, node: cfg.Cluster.Name + "/" + cfg.Replica,
		metaNow: make(chan struct{}, 1),
	}
	f.hbSeq.Store(uint64(time.Now().UnixNano()))
	f.log = cfg.Logger.With("component", "federation", "node", f.node)
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("federation: metrics: %w", err)
	}
	f.m = m
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok := false
	defer func() {
		if !ok {
			f.release()
		}
	}()
	if f.clusterID, err = f.loadClusterID(ctx); err != nil {
		return nil, err
	}
	popts := policy.Options{Node: f.node, Logger: cfg.Logger}
	if cfg.Store != nil {
		popts.Client, popts.Prefix = cfg.Store.Client, cfg.Store.Key("policies")+"/"
	}
	if f.pol, err = policy.Open(ctx, popts); err != nil {
		return nil, err
	}
	if len(cfg.Keys) > 0 {
		if f.keyring, err = memberlist.NewKeyring(cfg.Keys, cfg.Keys[0]); err != nil {
			return nil, fmt.Errorf("federation: keyring: %w", err)
		}
	}
	f.creds = cfg.Credentials
	if f.creds == nil && f.keyring != nil {
		f.creds = newKeyringCredentials(f.keyring)
	}
	if err := f.listen(); err != nil {
		return nil, err
	}
	f.follow()
	f.members = newMemberTable(f)
	f.repl = newReplicator(f)
	f.conns = newConnPool(f)
	if err := f.updateMeta(); err != nil {
		return nil, err
	}
	ok = true
	return f, nil
}

// loadClusterID returns the identity the replicas of this cluster share:
// created once in etcd, random per process without a store.
func (f *Federation) loadClusterID(ctx context.Context) ([]byte, error) {
	id := make([]byte, clusterIDLen)
	_, _ = rand.Read(id)
	if f.cfg.Store == nil {
		return id, nil
	}
	key := f.cfg.Store.Key("federation", "cluster-id")
	resp, err := f.cfg.Store.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(id))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("federation: cluster identity in etcd: %w", err)
	}
	if resp.Succeeded {
		return id, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) != 1 || len(kvs[0].Value) != clusterIDLen {
		return nil, fmt.Errorf("federation: etcd key %s does not hold a cluster identity", key)
	}
	return kvs[0].Value, nil
}

func (f *Federation) listen() error {
	host, port, _ := net.SplitHostPort(f.cfg.GossipAddr)
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("federation: gossipAddr %q: %w", f.cfg.GossipAddr, err)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: p, Logger: f.memberlistLogger()})
	if err != nil {
		return fmt.Errorf("federation: gossip listener: %w", err)
	}
	f.gossipPort = nt.GetAutoBindPort()
	var inner memberlist.NodeAwareTransport = nt
	if f.cfg.WrapTransport != nil {
		inner = f.cfg.WrapTransport(nt)
	}
	f.transport = newCountingTransport(inner, f.m.countBytes("gossip"))
	lis, err := net.Listen("tcp", f.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("federation: gRPC listener: %w", err)
	}
	f.grpcLis = countingListener{Listener: lis, count: f.m.countBytes("grpc")}
	f.grpcAddr = f.cfg.AdvertiseGRPCAddr
	if f.grpcAddr == "" {
		f.grpcAddr = advertisedGRPC(lis.Addr(), f.advertiseIP())
	}
	if f.apiAddr, err = advertisedAPI(f.cfg.APIAddr, f.advertiseIP()); err != nil {
		return err
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 20), grpc.ChainUnaryInterceptor(f.authUnary), grpc.ChainStreamInterceptor(f.authStream)}
	if f.creds != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(f.creds.ServerTLS())))
	} else {
		opts = append(opts, grpc.Creds(insecure.NewCredentials()))
	}
	f.grpcSrv = grpc.NewServer(opts...)
	pb.RegisterFederationServer(f.grpcSrv, &server{f: f})
	return nil
}

// advertiseIP is the IP other members reach gossip at.
func (f *Federation) advertiseIP() string {
	if f.cfg.AdvertiseAddr != "" {
		return f.cfg.AdvertiseAddr
	}
	host, _, _ := net.SplitHostPort(f.cfg.GossipAddr)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return host
	}
	return ""
}

// GossipAddr returns the address gossip listens on ("host:port"): what
// other members list as a seed.
func (f *Federation) GossipAddr() string {
	host, _, _ := net.SplitHostPort(f.cfg.GossipAddr)
	if ip := f.advertiseIP(); ip != "" {
		host = ip
	}
	return net.JoinHostPort(host, strconv.Itoa(f.transportPort()))
}

func (f *Federation) transportPort() int { return f.gossipPort }

// GRPCAddr returns the advertised address of the Federation gRPC service.
func (f *Federation) GRPCAddr() string { return f.grpcAddr }

// Node returns this member's gossip name, "CLUSTER/REPLICA".
func (f *Federation) Node() string { return f.node }

// Policies returns the mesh's policy store: write through it, read and
// subscribe to it. It is usable from New on.
func (f *Federation) Policies() *policy.Store { return f.pol }

// Leading reports whether this replica leads its cluster.
func (f *Federation) Leading() bool { return f.leading.Load() }

// Run joins the federation and keeps this member's part of it until ctx is
// cancelled: gossip, replication, leadership among the cluster's replicas,
// cluster states in the registry. On cancel it leaves the federation
// gracefully (other members mark this cluster Left unless another replica
// carries on) and releases everything. Run may be called once.
func (f *Federation) Run(ctx context.Context) error {
	err := errors.New("federation: Run called twice")
	f.runOnce.Do(func() { err = f.run(ctx) })
	return err
}

func (f *Federation) run(ctx context.Context) error {
	defer f.Close()
	ml, err := memberlist.Create(f.memberlistConfig())
	if err != nil {
		return fmt.Errorf("federation: start gossip: %w", err)
	}
	f.ml.Store(ml)
	f.log.Info("federation member started", "gossip", f.GossipAddr(), "grpc", f.grpcAddr, "encrypted", f.keyring != nil)

	serveDone := make(chan error, 1)
	go func() { serveDone <- f.grpcSrv.Serve(f.grpcLis) }()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case err := <-serveDone:
			serveDone <- err // for the wait below
			return fmt.Errorf("federation: gRPC server: %w", err)
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { f.repl.run(gctx); return nil })
	g.Go(func() error { f.statusLoop(gctx); return nil })
	g.Go(func() error { f.metaLoop(gctx); return nil })
	g.Go(func() error { f.rejoinLoop(gctx); return nil })
	g.Go(func() error { f.heartbeatLoop(gctx); return nil })
	g.Go(func() error { f.policyLoop(gctx); return nil })
	g.Go(func() error { f.members.verifyLoop(gctx); return nil })
	g.Go(func() error { return f.leadLoop(gctx) })
	g.Go(func() error { f.watchFollower(gctx); return nil })
	err = g.Wait()
	// Every loop has stopped (leadership handed back, no metadata update
	// can overtake the leave message): say goodbye, then stop serving.
	f.shutdown(ml)
	<-serveDone
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// shutdown leaves gossip and stops serving. Leadership was given up by
// leadLoop on the same cancel.
func (f *Federation) shutdown(ml *memberlist.Memberlist) {
	if msg := f.heartbeat(true); msg != nil {
		// Gossip reaches a member only when a round picks it before the
		// sockets close, and a starved process may run no round at all:
		// then its peers see it dead, not gone on purpose. So the goodbye
		// also goes to every member straight away, once, beside the gossip.
		for _, n := range ml.Members() {
			if n.Name != f.node {
				if err := ml.SendBestEffort(n, msg); err != nil {
					f.log.Debug("leave notice", "member", n.Name, "err", err)
				}
			}
		}
	}
	gossip := f.cfg.Gossip.Memberlist.GossipInterval
	if err := ml.Leave(2 * f.cfg.Gossip.Memberlist.ProbeInterval); err != nil {
		f.log.Debug("leave", "err", err)
	}
	// Leave returns once the message was handed out, possibly before the
	// last packet left: give it a few gossip rounds (serf's
	// LeavePropagateDelay) before closing the sockets.
	time.Sleep(3 * gossip)
	if err := ml.Shutdown(); err != nil {
		f.log.Debug("gossip shutdown", "err", err)
	}
	stopped := make(chan struct{})
	go func() { f.grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		f.grpcSrv.Stop()
	}
}

// Close releases listeners, connections and the policy store. Run calls it
// on its way out; call it yourself only when Run was never called. It is
// idempotent.
func (f *Federation) Close() {
	f.closeOnce.Do(func() {
		f.release()
	})
}

func (f *Federation) release() {
	if f.grpcSrv != nil {
		f.grpcSrv.Stop()
	} else if f.grpcLis != nil {
		f.grpcLis.Close()
	}
	if f.transport != nil && f.ml.Load() == nil {
		f.transport.Shutdown()
	}
	if f.conns != nil {
		f.conns.closeAll()
	}
	if f.pol != nil {
		f.pol.Close()
	}
}

func (f *Federation) memberlistConfig() *memberlist.Config {
	c := *f.cfg.Gossip.Memberlist
	c.Name = f.node
	c.Transport = f.transport
	c.BindAddr, _, _ = net.SplitHostPort(f.cfg.GossipAddr)
	c.BindPort = f.transportPort()
	c.AdvertiseAddr = f.advertiseIP()
	c.AdvertisePort = c.BindPort
	c.Label = f.cfg.Label
	c.Keyring, c.SecretKey = f.keyring, nil
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = f.keyring != nil, f.keyring != nil
	d := &delegate{f: f}
	c.Delegate, c.Events, c.Alive, c.Merge, c.Conflict = d, d, d, d, d
	c.DelegateProtocolVersion, c.DelegateProtocolMin, c.DelegateProtocolMax = wireVersion, wireVersion, wireVersion
	c.Logger, c.LogOutput = f.memberlistLogger(), nil
	// A restarted member reuses its name from a new address after this.
	c.DeadNodeReclaimTime = 2 * c.GossipToTheDeadTime
	f.bcast = &memberlist.TransmitLimitedQueue{NumNodes: f.numMembers, RetransmitMult: c.RetransmitMult}
	// Every member passes each newer heartbeat on, so each needs only a
	// few transmissions per member to reach all (2·log10(N) rounded up):
	// half of what announcements get, and heartbeats are most of the
	// messages.
	f.beats = &memberlist.TransmitLimitedQueue{NumNodes: f.numMembers, RetransmitMult: 2}
	return &c
}

// numMembers sizes the retransmissions of announcements. It reads a count
// the status loop keeps: memberlist calls it with its node lock held, so
// asking memberlist would lock it again.
func (f *Federation) numMembers() int { return max(int(f.liveMembers.Load()), 1) }

// memberlistLogger turns memberlist's "[LEVEL] memberlist: ..." lines into
// slog records at the matching level.
func (f *Federation) memberlistLogger() *log.Logger {
	return log.New(slogWriter{log: f.cfg.Logger.With("component", "memberlist", "node", f.node)}, "", 0)
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[INFO]": slog.LevelInfo} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			line, level = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "memberlist:")), l
			break
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// updateMeta rebuilds this member's metadata and reports whether it
// changed.
func (f *Federation) updateMeta() error {
	ver := f.haveVersion(f.cfg.Cluster.Name)
	role := pb.Role_ROLE_FOLLOWER
	if f.leading.Load() {
		role = pb.Role_ROLE_LEADER
	}
	b := encode(msgMeta, &pb.Meta{
		Cluster: f.cfg.Cluster.Name, ClusterId: f.clusterID, Region: f.cfg.Cluster.Region, Network: f.cfg.Cluster.Network,
		GrpcAddr: f.grpcAddr, Role: role, Epoch: ver.epoch, Version: ver.version, PolicyHorizon: f.horizon.Load(),
		ApiAddr: f.apiAddr,
	})
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("federation: member metadata is %d bytes, over memberlist's %d: shorten the cluster, region, network or gRPC address", len(b), memberlist.MetaMaxSize)
	}
	if old := f.meta.Load(); old != nil && bytes.Equal(*old, b) {
		return errUnchanged
	}
	f.meta.Store(&b)
	return nil
}

var errUnchanged = errors.New("unchanged")

// metaLoop re-advertises this member's metadata when it changed, at most
// every MetaInterval unless asked to hurry (role and epoch changes).
func (f *Federation) metaLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.Gossip.MetaInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.metaNow:
		}
		f.horizon.Store(uint64(quantize(f.pol.Coverage(f.members.names()))))
		if err := f.updateMeta(); err != nil {
			if !errors.Is(err, errUnchanged) {
				f.log.Error("member metadata", "err", err)
			}
			continue
		}
		if err := f.ml.Load().UpdateNode(f.cfg.Gossip.MetaInterval); err != nil {
			f.log.Debug("re-advertising metadata", "err", err)
		}
	}
}

// quantize rounds a horizon down to a whole second, so that metadata does
// not change on every sync.
func quantize(t policy.Timestamp) policy.Timestamp {
	const second = 1000 << 16
	return t / second * second
}

func (f *Federation) hurryMeta() {
	select {
	case f.metaNow <- struct{}{}:
	default:
	}
}

// rejoinLoop joins seeds and recently failed members that are not alive:
// the first join, joins after a seed was down, and healing partitions
// (each side of a healed partition thinks the other dead until someone
// joins across).
func (f *Federation) rejoinLoop(ctx context.Context) {
	ml := f.ml.Load()
	first := true
	t := time.NewTicker(f.cfg.Gossip.RejoinInterval)
	defer t.Stop()
	for {
		addrs := f.members.rejoinAddrs(f.cfg.Seeds, f.GossipAddr())
		if len(addrs) > 0 {
			n, err := ml.Join(addrs)
			switch {
			case err != nil && n == 0 && first:
				f.log.Warn("no seed answered; waiting to be joined or for a seed", "seeds", addrs, "err", err)
			case err != nil:
				f.log.Debug("rejoin", "addrs", addrs, "joined", n, "err", err)
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeatLoop gossips this member's heartbeat.
func (f *Federation) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.Gossip.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.heartbeat(false)
		}
	}
}

// heartbeat queues this member's heartbeat for gossip and returns it (nil
// when none was queued: the member is leaving already).
func (f *Federation) heartbeat(leaving bool) []byte {
	// Once the leaving heartbeat is queued, no ordinary one may replace it.
	if f.leaving.Load() || (leaving && f.leaving.Swap(true)) {
		return nil
	}
	msg := encode(msgHeartbeat, &pb.Heartbeat{Node: f.node, Seq: f.hbSeq.Add(1), Leaving: leaving})
	if leaving {
		// Saying goodbye is an announcement: it must reach everyone.
		f.bcast.QueueBroadcast(&broadcast{name: "h/" + f.node, msg: msg})
		return msg
	}
	f.beats.QueueBroadcast(&broadcast{name: "h/" + f.node, msg: msg})
	return msg
}

// broadcast is one announcement in the gossip queue. A newer announcement
// with the same name replaces an older one still queued.
type broadcast struct {
	name string
	msg  []byte
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.name == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
