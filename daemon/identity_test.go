package daemon_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
)

// trustMesh is the material of a mesh with trust on: a root CA directory,
// a sealing key (in the environment) and a gossip key file.
type trustMesh struct {
	t              *testing.T
	caDir, keyFile string
	trustDomain    string
	gossipKey      []byte
}

func newTrustMesh(t *testing.T) *trustMesh {
	t.Helper()
	t.Setenv(ca.EnvKey, base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	m := &trustMesh{t: t, caDir: filepath.Join(t.TempDir(), "ca"), trustDomain: "mesh.test", gossipKey: []byte("0123456789abcdef0123456789abcdef")}
	if code, _, stderr := ctl("trust", "init", "--trust-domain", m.trustDomain, "--dir", m.caDir); code != 0 {
		t.Fatal(stderr)
	}
	m.keyFile = filepath.Join(t.TempDir(), "gossip.keys")
	if err := os.WriteFile(m.keyFile, []byte(base64.StdEncoding.EncodeToString(m.gossipKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return m
}

// intermediate issues cluster's intermediate from the root in caDir.
func (m *trustMesh) intermediate(caDir, cluster string) string {
	m.t.Helper()
	dir, err := service.IssueIntermediateDir(caDir, cluster, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	return dir
}

// cluster starts a federated meridiand with trust on: the root holder
// when rootDir is set, else with its intermediate from caDir.
func (m *trustMesh) cluster(name, region, rootDir, caDir string, seeds ...string) *running {
	m.t.Helper()
	return startDaemon(m.t, m.t.TempDir(), func(c *daemon.Config) {
		c.Cluster = registry.Cluster{Name: name, Region: region}
		c.Trust = daemon.Trust{Enabled: true, TrustDomain: m.trustDomain, RootDir: rootDir, CADir: caDir, CAAddr: "127.0.0.1:0"}
		c.Federation = daemon.Federation{Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
			Seeds: seeds, KeyFile: m.keyFile, Preset: "local"}
	})
}

// counter reads one series of a counter.
func counter(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// memberVerified reports whether a daemon's federation has verified a
// member's identity.
func memberVerified(d *daemon.Daemon, node string) (verified, known bool) {
	for _, m := range d.Federation.Status().GetMembers() {
		if m.GetName() == node {
			return m.GetVerified(), true
		}
	}
	return false, false
}

// With trust on, federation members prove their cluster with certificates
// chained to the mesh root: two clusters whose intermediates come from one
// root federate; a member whose certificate comes from another root is
// refused, and so is one with a valid certificate of its own cluster that
// claims to be another (it even copies that cluster's identity from
// gossip, which passes the split-brain guard). Both hold the gossip key:
// the certificate is what refuses them. Refusals are counted.
func TestGossipIdentity(t *testing.T) {
	m := newTrustMesh(t)
	dc1 := m.cluster("dc1", "east", m.caDir, "")
	seed := dc1.d.Federation.GossipAddr()
	dc2 := m.cluster("dc2", "west", "", m.intermediate(m.caDir, "dc2"), seed)
	register(t, dc2.d.GRPCAddr(), "web", "10.2.0.1:8080", "west")
	testutil.Eventually(t, 30*time.Second, func() error {
		seg := dc1.d.Registry.View().Segment("dc2")
		if seg == nil || seg.EndpointCount() != 1 {
			return fmt.Errorf("dc1 does not hold dc2's endpoint yet")
		}
		for _, pair := range [][2]*running{{dc1, dc2}, {dc2, dc1}} {
			if ok, _ := memberVerified(pair[0].d, pair[1].d.Federation.Node()); !ok {
				return fmt.Errorf("%s has not verified %s", pair[0].d.Federation.Node(), pair[1].d.Federation.Node())
			}
		}
		return nil
	})
	// Announcements of a member not verified yet are dropped as
	// unverified too: the refusals below are counted from here.
	const unverified = "meridian_federation_dropped_messages_total"

	t.Run("another root", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other-ca")
		if code, _, stderr := ctl("trust", "init", "--trust-domain", m.trustDomain, "--dir", other); code != 0 {
			t.Fatal(stderr)
		}
		dc3 := m.cluster("dc3", "north", "", m.intermediate(other, "dc3"), seed)
		register(t, dc3.d.GRPCAddr(), "web", "10.3.0.1:8080", "north")
		before := counter(t, dc1.d.Metrics, unverified, "reason", "unverified")
		testutil.Eventually(t, 30*time.Second, func() error {
			if _, known := memberVerified(dc1.d, "dc3/r0"); !known {
				return fmt.Errorf("dc1 has not heard of dc3/r0")
			}
			if n := counter(t, dc1.d.Metrics, unverified, "reason", "unverified"); n <= before {
				return fmt.Errorf("dc1 has not refused dc3 yet")
			}
			return nil
		})
		if ok, _ := memberVerified(dc1.d, "dc3/r0"); ok {
			t.Fatal("dc1 verified a member of another root")
		}
		if dc1.d.Registry.View().Segment("dc3") != nil {
			t.Fatal("dc1 took the segment of a member of another root")
		}
	})

	t.Run("claims another cluster", func(t *testing.T) {
		ctx := context.Background()
		// A real member of the mesh, cluster dc4, whose certificate is
		// good — but which tells gossip it is a replica of dc2, with
		// dc2's cluster identity copied, and publishes a dc2 segment of
		// its own.
		st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sealer, err := ca.LoadSealer("")
		if err != nil {
			t.Fatal(err)
		}
		dc4, err := service.New(ctx, service.Config{TrustDomain: spiffeid.RequireTrustDomainFromString(m.trustDomain), Cluster: "dc4",
			Etcd: st.Client, Prefix: st.Key("trust"), Sealer: sealer, CADir: m.intermediate(m.caDir, "dc4"), ListenAddr: "-"})
		if err != nil {
			t.Fatal(err)
		}
		id, err := dc2.d.Store.Client.Get(ctx, dc2.d.Store.Key("federation", "cluster-id"))
		if err != nil || len(id.Kvs) != 1 {
			t.Fatalf("dc2's cluster identity: %v", err)
		}
		if _, err := st.Client.Put(ctx, st.Key("federation", "cluster-id"), string(id.Kvs[0].Value)); err != nil {
			t.Fatal(err)
		}
		reg := registry.New(registry.Options{})
		evil := registry.Cluster{Name: "dc2", Region: "west"}
		f, err := federation.New(federation.Config{
			Cluster: evil, Replica: "evil", Registry: reg, Store: st, GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
			Seeds: []string{seed}, Keys: [][]byte{m.gossipKey}, Gossip: federation.Local(),
			Credentials: dc4.Member, Authenticator: dc4.Member,
			OnLead: func(context.Context) {
				_, _ = reg.Apply("dc2", registry.PutEndpoint(&registry.Endpoint{
					Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: "evil", Addresses: []string{"10.66.6.6"}, Port: 8080,
					Locality: registry.Locality{Region: "west"},
				}))
			},
			Logger: slog.New(slog.NewTextHandler(testLog(t), nil)).With("cluster", "impostor"),
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- f.Run(runCtx) }()
		t.Cleanup(func() { cancel(); <-done })

		before := counter(t, dc1.d.Metrics, unverified, "reason", "unverified")
		testutil.Eventually(t, 30*time.Second, func() error {
			if seg := reg.View().Segment("dc2"); !f.Leading() || seg.EndpointCount() != 1 {
				return fmt.Errorf("the impostor has not published its segment yet")
			}
			if _, known := memberVerified(dc1.d, "dc2/evil"); !known {
				return fmt.Errorf("dc1 has not heard of dc2/evil")
			}
			if n := counter(t, dc1.d.Metrics, unverified, "reason", "unverified"); n <= before {
				return fmt.Errorf("dc1 has not refused the impostor yet")
			}
			return nil
		})
		if ok, _ := memberVerified(dc1.d, "dc2/evil"); ok {
			t.Fatal("dc1 verified a dc4 certificate as dc2")
		}
		seg := dc1.d.Registry.View().Segment("dc2")
		if _, ok := seg.Endpoint(registry.EndpointKey{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: "evil"}); ok || seg.EndpointCount() != 1 {
			t.Fatalf("dc1 took the impostor's dc2 segment: %d endpoints", seg.EndpointCount())
		}
		if st := dc1.d.Registry.View().Status("dc2").State; st != registry.Alive {
			t.Fatalf("dc1 sees dc2 %v", st)
		}
	})
}
