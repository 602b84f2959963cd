package service_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/internal/tlstest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/service"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

var (
	td  = trusttest.TD
	web = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	api = spiffeid.RequireFromString("spiffe://mesh.test/ns/edge/sa/api")
)

func sealer(t testing.TB) *ca.Sealer {
	s, err := ca.NewSealer(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cluster is one cluster's trust component on its own etcd.
type cluster struct {
	name string
	etcd *clientv3.Client
	svc  *service.Service
	stop func()
}

func start(t *testing.T, name string, etcd *clientv3.Client, mutate func(*service.Config)) *cluster {
	t.Helper()
	cfg := service.Config{TrustDomain: td, Cluster: name, Etcd: etcd, Prefix: "/meridian/trust", Sealer: sealer(t), ListenAddr: "127.0.0.1:0", Logger: trusttest.Logger()}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := service.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := svc.Run(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	})
	c := &cluster{name: name, etcd: etcd, svc: svc}
	var once sync.Once
	c.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) url() string { return "https://" + c.svc.CAAddr() }

func rootDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := service.InitRootDir(dir, ca.RootOptions{TrustDomain: td}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBootstrapFromRootDirAndRestart(t *testing.T) {
	etcd := trusttest.Etcd(t)
	dir := rootDir(t)
	hub := start(t, "hub", etcd, func(c *service.Config) { c.RootDir = dir })
	first := hub.svc.Authority.Chain()[0]
	s, err := hub.svc.SVIDs.Get(hub.svc.MemberID())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(s.Certificates, hub.svc.Bundles); err != nil {
		t.Fatal(err)
	}
	if len(hub.svc.BundleUpdate()) == 0 {
		t.Fatal("the root holder signed no first bundle")
	}
	hub.stop()

	// Restart: everything comes back from etcd; the directory is not read.
	again := start(t, "hub", etcd, nil)
	if !again.svc.Authority.Chain()[0].Equal(first) {
		t.Fatal("a restart changed the intermediate")
	}
	if _, err := again.svc.PrepareRootRotation(context.Background()); err != nil {
		t.Fatalf("the restarted root holder lost its root: %v", err)
	}
	// Another cluster's etcd content is refused.
	if _, err := service.New(context.Background(), service.Config{TrustDomain: td, Cluster: "other", Etcd: etcd, Prefix: "/meridian/trust", Sealer: sealer(t), ListenAddr: "-"}); err == nil {
		t.Fatal("cluster other started on hub's CA")
	}
}

func TestBootstrapFromCADir(t *testing.T) {
	dir := rootDir(t)
	caDir, err := service.IssueIntermediateDir(dir, "edge", 0)
	if err != nil {
		t.Fatal(err)
	}
	edge := start(t, "edge", trusttest.Etcd(t), func(c *service.Config) { c.CADir = caDir })
	s, err := edge.svc.SVIDs.Get(api)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := service.LoadRootDir(dir)
	if _, _, err := x509svid.Verify(s.Certificates, bundle.NewSource(trusttest.Bundle(root))); err != nil {
		t.Fatalf("SVID does not chain to the root: %v", err)
	}
	if _, err := service.IssueIntermediateDir(dir, "../x", 0); err == nil {
		t.Fatal("a path as a cluster name")
	}
	if _, err := service.InitRootDir(dir, ca.RootOptions{TrustDomain: td}, nil, nil); err == nil {
		t.Fatal("init over an existing root")
	}
}

func TestFirstStartNeedsMaterial(t *testing.T) {
	_, err := service.New(context.Background(), service.Config{TrustDomain: td, Cluster: "x", Etcd: trusttest.Etcd(t), Prefix: "/p", Sealer: sealer(t), ListenAddr: "-"})
	if err == nil {
		t.Fatal("started without CA material")
	}
}

// join starts cluster name by the online path: a join token minted on the
// hub, the hub's CA URL and its root pinned.
func join(t *testing.T, hub *cluster, name string) *cluster {
	t.Helper()
	cid, _ := spiffeid.FromSegments(td, "meridian", "cluster", name)
	tok, _, err := hub.svc.JoinTokens.Create(context.Background(), cid, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hub.svc.Bundles.Get(td)
	pin := bundle.KeyID(b.X509Authorities()[0])
	return start(t, name, trusttest.Etcd(t), func(c *service.Config) {
		c.Join = &service.Join{URL: hub.url(), Token: tok, RootKeyID: pin}
	})
}

// TestRootRotationAcrossClusters: a workload in the edge cluster calls one
// in the hub cluster over mTLS without pause, each side with the SVIDs and
// bundles of its own cluster's trust component, while the root is rotated
// as the package doc describes — updates carried between the clusters as
// federation would carry them. Not one request may fail; afterwards both
// clusters hold only the new root, also after a restart.
func TestRootRotationAcrossClusters(t *testing.T) {
	ctx := context.Background()
	hub := start(t, "hub", trusttest.Etcd(t), func(c *service.Config) { c.RootDir = rootDir(t) })
	edge := join(t, hub, "edge")
	if err := edge.svc.Authority.Chain()[0].CheckSignatureFrom(mustRoot(t, hub)); err != nil {
		t.Fatalf("edge's intermediate is not under the hub's root: %v", err)
	}

	addr := tlstest.EchoServer(t, mtls.ServerTLS(hub.svc.SVIDs.Source(web), hub.svc.Bundles))
	tr := tlstest.StartTraffic(t, addr, mtls.ClientTLS(edge.svc.SVIDs.Source(api), edge.svc.Bundles, web), 4)
	tr.WaitMore(t, 50)

	update, err := hub.svc.PrepareRootRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr.WaitMore(t, 50)
	if changed, err := edge.svc.ApplyBundleUpdate(ctx, update); err != nil || !changed {
		t.Fatalf("edge applying prepare: %v %v", changed, err)
	}
	tr.WaitMore(t, 50)
	if err := hub.svc.ActivateRoot(ctx); err != nil {
		t.Fatal(err)
	}
	tr.WaitMore(t, 50)
	if err := edge.svc.RenewIntermediate(ctx, hub.url()); err != nil {
		t.Fatal(err)
	}
	tr.WaitMore(t, 50)
	retire, err := hub.svc.RetireRootRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr.WaitMore(t, 50)
	if changed, err := edge.svc.ApplyBundleUpdate(ctx, retire); err != nil || !changed {
		t.Fatalf("edge applying retire: %v %v", changed, err)
	}
	tr.WaitMore(t, 50)
	tr.Stop()
	ok, failed, last := tr.Counts()
	if failed != 0 {
		t.Fatalf("%d of %d requests failed; last: %v", failed, failed+ok, last)
	}
	t.Logf("root rotated across two clusters under %d mTLS requests, 0 failed", ok)

	newRoot := mustRoot(t, hub)
	for _, c := range []*cluster{hub, edge} {
		b, _ := c.svc.Bundles.Get(td)
		if len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(newRoot) {
			t.Fatalf("%s holds %d roots", c.name, len(b.X509Authorities()))
		}
	}
	// Replaying the prepare update changes nothing (signed by a retired root).
	if changed, err := edge.svc.ApplyBundleUpdate(ctx, update); err == nil || changed {
		t.Fatal("replayed rotation update applied")
	}
	// A restart of edge comes back with the new root and intermediate.
	edge.stop()
	again := start(t, "edge", edge.etcd, nil)
	if b, _ := again.svc.Bundles.Get(td); !b.X509Authorities()[0].Equal(newRoot) {
		t.Fatal("restart lost the rotation")
	}
	if err := again.svc.Authority.Chain()[0].CheckSignatureFrom(newRoot); err != nil {
		t.Fatalf("restart lost the renewed intermediate: %v", err)
	}
}

func mustRoot(t *testing.T, hub *cluster) *x509.Certificate {
	t.Helper()
	b, _ := hub.svc.Bundles.Get(td)
	for _, r := range b.X509Authorities() {
		if hub.svc.Authority.Chain()[0].CheckSignatureFrom(r) == nil {
			return r
		}
	}
	t.Fatal("no root signs the hub's intermediate")
	return nil
}

func TestAdminService(t *testing.T) {
	hub := start(t, "hub", trusttest.Etcd(t), func(c *service.Config) { c.RootDir = rootDir(t) })
	g := grpc.NewServer()
	hub.svc.RegisterGRPC(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	defer g.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cli := trustpb.NewTrustServiceClient(conn)
	ctx := context.Background()
	resp, err := cli.CreateJoinToken(ctx, &trustpb.CreateJoinTokenRequest{
		Identity: &trustpb.CreateJoinTokenRequest_Workload{Workload: &trustpb.Workload{Namespace: "vm", ServiceAccount: "billing"}},
		Ttl:      durationpb.New(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SpiffeId != "spiffe://mesh.test/ns/vm/sa/billing" || len(resp.RootKeyIds) != 1 || resp.CaUrl != hub.url() {
		t.Fatalf("response %v", resp)
	}
	if id, err := hub.svc.JoinTokens.Redeem(ctx, resp.Token); err != nil || id.String() != resp.SpiffeId {
		t.Fatalf("token does not redeem: %v", err)
	}
	if _, err := cli.CreateJoinToken(ctx, &trustpb.CreateJoinTokenRequest{Identity: &trustpb.CreateJoinTokenRequest_Cluster{Cluster: "a/b"}}); err == nil {
		t.Fatal("bad cluster name accepted")
	}
	if _, err := cli.CreateJoinToken(ctx, &trustpb.CreateJoinTokenRequest{}); err == nil {
		t.Fatal("no identity accepted")
	}
	b, err := cli.GetBundle(ctx, &trustpb.GetBundleRequest{})
	if err != nil || len(b.Bundles) != 1 || !b.Bundles[0].Local || b.Bundles[0].Sequence != 1 {
		t.Fatalf("bundle %v %v", b, err)
	}
}
