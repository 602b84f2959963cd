package federation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// The harness runs several control planes in one process, each a real
// Federation over real loopback sockets (memberlist UDP/TCP, gRPC with
// keyring-derived mutual TLS), most with a real embedded etcd. A network
// value sits in every member's gossip transport and gRPC dialer and can cut
// the link between any two members, both ways, the way a partition does.

var testKey = []byte("0123456789abcdef0123456789abcdef")

// network decides which members can talk. Members are identified by name;
// addresses map to names as members register.
type network struct {
	mu    sync.Mutex
	addrs map[string]string        // gossip or gRPC address → member
	cut   map[[2]string]bool       // sorted pair → cut
	noRPC map[string]bool          // members whose gRPC nobody reaches
	conns map[[2]string][]net.Conn // (from, to) → gRPC connections to close on a cut
}

func newNetwork() *network {
	return &network{addrs: map[string]string{}, cut: map[[2]string]bool{}, noRPC: map[string]bool{}, conns: map[[2]string][]net.Conn{}}
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (n *network) register(name string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.addrs[a] = name
	}
}

func (n *network) blocked(from, addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	to, ok := n.addrs[addr]
	return ok && n.cut[pair(from, to)]
}

// Cut severs the link between two members, closing open connections.
func (n *network) Cut(a, b string) {
	n.mu.Lock()
	n.cut[pair(a, b)] = true
	var doomed []net.Conn
	for k, cs := range n.conns {
		if pair(k[0], k[1]) == pair(a, b) {
			doomed = append(doomed, cs...)
			delete(n.conns, k)
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// CutRPC makes a member's gRPC unreachable, both ways, while its gossip
// still flows: the others learn of its changes but cannot pull them.
func (n *network) CutRPC(name string, cut bool) {
	n.mu.Lock()
	n.noRPC[name] = cut
	var doomed []net.Conn
	if cut {
		for k, cs := range n.conns {
			if k[0] == name || k[1] == name {
				doomed = append(doomed, cs...)
				delete(n.conns, k)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

// Heal restores the link between two members.
func (n *network) Heal(a, b string) {
	n.mu.Lock()
	delete(n.cut, pair(a, b))
	n.mu.Unlock()
}

// transport wraps a member's gossip transport: packets and streams to a
// member it is cut from vanish, as on a dead link.
func (n *network) transport(from string) func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		return &cutTransport{NodeAwareTransport: inner, n: n, from: from}
	}
}

type cutTransport struct {
	memberlist.NodeAwareTransport
	n    *network
	from string
}

var errCut = errors.New("test network: link cut")

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.n.blocked(t.from, addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.n.blocked(t.from, a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.n.blocked(t.from, addr) {
		return nil, errCut
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.n.blocked(t.from, a.Addr) {
		return nil, errCut
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// dialer is a member's gRPC dialer on the test network.
func (n *network) dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		noRPC := n.noRPC[from] || n.noRPC[n.addrs[addr]]
		n.mu.Unlock()
		if noRPC || n.blocked(from, addr) {
			return nil, errCut
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		if to, ok := n.addrs[addr]; ok {
			n.conns[[2]string{from, to}] = append(n.conns[[2]string{from, to}], c)
		}
		n.mu.Unlock()
		return c, nil
	}
}

// member is one control plane in the harness.
type member struct {
	name     string // node name CLUSTER/REPLICA
	cluster  registry.Cluster
	f        *federation.Federation
	reg      *registry.Registry
	st       *store.Store
	metrics  *prometheus.Registry
	cancel   context.CancelFunc
	done     chan error
	dataDir  string
	gossip   int
	grpcPort int
}

type lab struct {
	t       testing.TB
	net     *network
	preset  federation.Gossip
	seeds   []string
	members map[string]*member
	logger  *slog.Logger
}

func newLab(t testing.TB) *lab {
	l := &lab{t: t, net: newNetwork(), preset: testPreset(), members: map[string]*member{}, logger: testLogger()}
	t.Cleanup(l.stopAll)
	return l
}

// testPreset is Local() made tolerant of a loaded 2-core machine running
// the race detector: slower suspicion, so that only real failures count.
func testPreset() federation.Gossip {
	g := federation.Local()
	g.Memberlist.ProbeInterval = 200 * time.Millisecond
	g.Memberlist.ProbeTimeout = 150 * time.Millisecond
	g.Memberlist.SuspicionMult = 4
	g.Memberlist.PushPullInterval = 3 * time.Second
	g.RejoinInterval = 500 * time.Millisecond
	g.StaleAfter = 1500 * time.Millisecond
	g.CollectInterval = 500 * time.Millisecond
	return g
}

func testLogger() *slog.Logger {
	if os.Getenv("FEDERATION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type memberOpts struct {
	replica  string
	withEtcd bool
	// etcd shared with other replicas of the cluster (an external store).
	sharedEtcd string
	cfg        func(*federation.Config)
	dataDir    string
	gossip     int
	grpcPort   int
}

// start runs a control plane for cluster (region r-CLUSTER) and joins it
// to the lab.
func (l *lab) start(cluster string, o memberOpts) *member {
	t := l.t
	t.Helper()
	if o.replica == "" {
		o.replica = "r0"
	}
	m := &member{
		name:    cluster + "/" + o.replica,
		cluster: registry.Cluster{Name: cluster, Region: "r-" + cluster, Network: "net-" + cluster, Labels: map[string]string{"lab": "yes"}},
		reg:     registry.New(registry.Options{}),
		metrics: prometheus.NewRegistry(),
		dataDir: o.dataDir, gossip: o.gossip, grpcPort: o.grpcPort,
	}
	ctx := context.Background()
	switch {
	case o.sharedEtcd != "":
		st, err := store.Open(ctx, store.Config{Endpoints: []string{o.sharedEtcd}}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		m.st = st
	case o.withEtcd:
		if m.dataDir == "" {
			m.dataDir = t.TempDir()
		}
		st, err := store.Open(ctx, store.Config{DataDir: m.dataDir}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		m.st = st
	}
	cfg := federation.Config{
		Cluster: m.cluster, Replica: o.replica, Registry: m.reg, Store: m.st,
		GossipAddr: "127.0.0.1:" + strconv.Itoa(m.gossip), GRPCAddr: "127.0.0.1:" + strconv.Itoa(m.grpcPort),
		Seeds: l.seeds, Keys: [][]byte{testKey}, Gossip: l.preset,
		WrapTransport: l.net.transport(m.name), Dialer: l.net.dialer(m.name),
		Logger: l.logger.With("cluster", cluster), Metrics: m.metrics,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	// A restart binds the ports it had; a connection may hold one for a
	// moment after the old listener closed.
	var f *federation.Federation
	var err error
	testutil.Eventually(t, 10*time.Second, func() error {
		f, err = federation.New(cfg)
		return err
	})
	m.f = f
	m.gossip, m.grpcPort = port(t, f.GossipAddr()), port(t, f.GRPCAddr())
	l.net.register(m.name, f.GossipAddr(), f.GRPCAddr())
	rctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- f.Run(rctx) }()
	l.members[m.name] = m
	if len(l.seeds) < 3 {
		l.seeds = append(l.seeds, f.GossipAddr())
	}
	return m
}

func port(t testing.TB, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// kill stops a member as a crash does: its links are cut first, so it
// cannot say goodbye, then it stops; its etcd client goes with it, so its
// lease expires instead of being revoked.
func (l *lab) kill(m *member) {
	l.t.Helper()
	for _, o := range l.members {
		if o != m {
			l.net.Cut(m.name, o.name)
		}
	}
	if m.st != nil {
		m.st.Close()
	}
	l.stop(m)
	for _, o := range l.members {
		if o != m {
			l.net.Heal(m.name, o.name)
		}
	}
}

// stop stops a member gracefully (it leaves).
func (l *lab) stop(m *member) {
	l.t.Helper()
	m.cancel()
	select {
	case err := <-m.done:
		if err != nil {
			l.t.Errorf("%s: Run: %v", m.name, err)
		}
	case <-time.After(20 * time.Second):
		l.t.Errorf("%s did not stop", m.name)
	}
	if m.st != nil {
		m.st.Close()
	}
	delete(l.members, m.name)
}

func (l *lab) stopAll() {
	for _, m := range l.members {
		l.stop(m)
	}
}

// isolate cuts m from every other member; the returned func heals.
func (l *lab) isolate(m *member) func() {
	for _, o := range l.members {
		if o != m {
			l.net.Cut(m.name, o.name)
		}
	}
	return func() {
		for _, o := range l.members {
			if o != m {
				l.net.Heal(m.name, o.name)
			}
		}
	}
}

func (l *lab) all() []*member {
	out := make([]*member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, m)
	}
	return out
}

var web = registry.ServiceKey{Namespace: "shop", Name: "web"}

func endpoint(cluster, id, ip string) *registry.Endpoint {
	return &registry.Endpoint{Service: web, ID: id, Addresses: []string{ip}, Port: 8080, Locality: registry.Locality{Region: "r-" + cluster, Zone: "z1"}}
}

// apply writes to a member's own segment, as its discovery would; it
// waits until the member leads.
func (m *member) apply(t testing.TB, changes ...registry.Change) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		if !m.f.Leading() {
			return fmt.Errorf("%s does not lead", m.name)
		}
		_, err := m.reg.Apply(m.cluster.Name, changes...)
		return err
	})
}

// sameSegment reports whether two members hold the same copy of a
// cluster's segment (epoch, version and every endpoint).
func sameSegment(a, b *member, cluster string) error {
	sa, sb := a.reg.View().Segment(cluster), b.reg.View().Segment(cluster)
	if sa == nil || sb == nil {
		return fmt.Errorf("%s or %s lacks cluster %s", a.name, b.name, cluster)
	}
	if sa.Epoch() != sb.Epoch() || sa.Version() != sb.Version() {
		return fmt.Errorf("%s holds %s at %d.%d, %s at %d.%d", a.name, cluster, sa.Epoch(), sa.Version(), b.name, sb.Epoch(), sb.Version())
	}
	var diff error
	ea, eb := sa.Data().Endpoints, sb.Data().Endpoints
	if len(ea) != len(eb) {
		return fmt.Errorf("%s: %d vs %d endpoints", cluster, len(ea), len(eb))
	}
	for i := range ea {
		if !ea[i].Equal(eb[i]) {
			diff = fmt.Errorf("%s: endpoint %s differs", cluster, ea[i].ID)
		}
	}
	return diff
}

// converged checks that every member holds every cluster's segment as its
// owner does.
func (l *lab) converged() error {
	led := map[string]bool{}
	for _, m := range l.all() {
		led[m.cluster.Name] = led[m.cluster.Name] || m.f.Leading()
	}
	for c, ok := range led {
		if !ok {
			return fmt.Errorf("cluster %s has no leader", c)
		}
	}
	for _, owner := range l.all() {
		if !owner.f.Leading() {
			continue
		}
		for _, m := range l.all() {
			if err := sameSegment(owner, m, owner.cluster.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *member) status(cluster string) registry.ClusterState {
	return m.reg.View().Status(cluster).State
}

// effective returns the health every member's view gives an endpoint.
func (m *member) effective(cluster, id string) (registry.Health, error) {
	v := m.reg.View()
	seg := v.Segment(cluster)
	if seg == nil {
		return 0, fmt.Errorf("%s lacks %s", m.name, cluster)
	}
	e, ok := seg.Endpoint(registry.EndpointKey{Service: web, ID: id})
	if !ok {
		return 0, fmt.Errorf("%s lacks endpoint %s/%s", m.name, cluster, id)
	}
	h, _ := v.EffectiveHealth(e)
	return h, nil
}

// counter reads a counter of a member's metrics.
func (m *member) counter(name string, labels map[string]string) float64 {
	mfs, err := m.metrics.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			sum += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	return sum
}
