package exchange_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/internal/tlstest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/exchange"
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

// member is one cluster's trust component and its exchange, on a store
// shared by every member: replication without its delays.
type member struct {
	name    string
	svc     *service.Service
	x       *exchange.Exchange
	metrics *prometheus.Registry
}

func sealer(t *testing.T) *ca.Sealer {
	s, err := ca.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T, store exchange.Store, name string, mutate func(*service.Config)) *member {
	t.Helper()
	cfg := service.Config{TrustDomain: td, Cluster: name, Etcd: trusttest.Etcd(t), Prefix: "/meridian/trust", Sealer: sealer(t), ListenAddr: "-", Logger: trusttest.Logger()}
	mutate(&cfg)
	svc, err := service.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{name: name, svc: svc, metrics: prometheus.NewRegistry()}
	m.x, err = exchange.New(exchange.Config{Trust: svc, Cluster: name, Store: store, RepublishInterval: 100 * time.Millisecond,
		Logger: trusttest.Logger(), Metrics: m.metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{svc.Run, m.x.RunApply, m.x.RunPublish} {
		wg.Go(func() {
			if err := run(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return m
}

// local is the context of a call from meridiand's own host.
func local() context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}})
}

func mesh(t *testing.T) (store *policy.Store, hub, edge *member) {
	t.Helper()
	store, err := policy.Open(context.Background(), policy.Options{Node: "mesh/r0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := service.InitRootDir(dir, ca.RootOptions{TrustDomain: td}, nil, nil); err != nil {
		t.Fatal(err)
	}
	caDir, err := service.IssueIntermediateDir(dir, "edge", 0)
	if err != nil {
		t.Fatal(err)
	}
	hub = start(t, store, "hub", func(c *service.Config) { c.RootDir = dir })
	edge = start(t, store, "edge", func(c *service.Config) { c.CADir = caDir })
	return store, hub, edge
}

// step takes a rotation step on the hub, once every cluster has caught up
// with the one before (the service refuses it until then).
func step(t *testing.T, hub *member, s trustpb.RotationStep) *trustpb.RotationStatus {
	t.Helper()
	srv := rotationServer(hub)
	var st *trustpb.RotationStatus
	testutil.Eventually(t, 10*time.Second, func() error {
		var err error
		st, err = srv.Rotate(local(), &trustpb.RotateRequest{Step: s})
		return err
	})
	return st
}

// waitCaughtUp waits until every cluster has caught up with a step.
func waitCaughtUp(t *testing.T, m *member, s trustpb.RotationStep) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if behind := exchange.Behind(m.x.Status(), s); len(behind) > 0 {
			return fmt.Errorf("behind: %v", behind)
		}
		return nil
	})
}

// The root rotates across two clusters through the store alone — no
// connection between them, no CA service address — under continuous mTLS
// traffic between their workloads, with not one failed handshake; and
// the steps refuse to run ahead of a cluster that has not caught up.
func TestRotationThroughTheStore(t *testing.T) {
	store, hub, edge := mesh(t)
	waitCaughtUp(t, hub, trustpb.RotationStep_ROTATION_STEP_RETIRE)

	addr := tlstest.EchoServer(t, mtls.ServerTLS(hub.svc.SVIDs.Source(web), hub.svc.Bundles))
	tr := tlstest.StartTraffic(t, addr, mtls.ClientTLS(edge.svc.SVIDs.Source(api), edge.svc.Bundles, web), 4)
	tr.WaitMore(t, 50)

	st := step(t, hub, trustpb.RotationStep_ROTATION_STEP_PREPARE)
	if st.GetPhase() != service.PhasePrepared || len(st.GetRoots()) != 2 {
		t.Fatalf("after prepare: %v", st)
	}
	waitCaughtUp(t, hub, trustpb.RotationStep_ROTATION_STEP_PREPARE)
	tr.WaitMore(t, 50)
	old := map[*member][]*x509.Certificate{hub: hub.svc.Authority.Chain(), edge: edge.svc.Authority.Chain()}
	step(t, hub, trustpb.RotationStep_ROTATION_STEP_ACTIVATE)
	waitCaughtUp(t, hub, trustpb.RotationStep_ROTATION_STEP_ACTIVATE)
	tr.WaitMore(t, 50)
	staleIntermediates(t, store, old)
	st = step(t, hub, trustpb.RotationStep_ROTATION_STEP_RETIRE)
	waitCaughtUp(t, hub, trustpb.RotationStep_ROTATION_STEP_RETIRE)
	tr.WaitMore(t, 50)
	tr.Stop()
	ok, failed, last := tr.Counts()
	if failed != 0 {
		t.Fatalf("%d of %d handshakes failed; last: %v", failed, ok+failed, last)
	}
	t.Logf("root rotated through the store under %d mTLS handshakes, 0 failed", ok)

	newRoot := st.GetCurrentRoot()
	for _, m := range []*member{hub, edge} {
		b, _ := m.svc.Bundles.Get(td)
		if len(b.X509Authorities()) != 1 || bundle.KeyID(b.X509Authorities()[0]) != newRoot {
			t.Fatalf("%s trusts %d roots", m.name, len(b.X509Authorities()))
		}
		chain := m.svc.Authority.Chain()
		if err := chain[len(chain)-1].CheckSignatureFrom(b.X509Authorities()[0]); err != nil {
			t.Fatalf("%s's intermediate is not under the new root: %v", m.name, err)
		}
	}
	if st := hub.x.Status(); st.GetPhase() != service.PhaseSteady {
		t.Fatalf("phase after retire: %s", st.GetPhase())
	}
}

// staleIntermediates puts back, after activate, the intermediates the
// members had before it — what a store that has not caught up with the
// step holds (the root holder reads its own old one back until its
// publish lands): still valid, since the old root is still trusted, but
// installing them would undo the rotation. They are left alone, and not
// counted as refused.
func staleIntermediates(t *testing.T, store *policy.Store, old map[*member][]*x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	for m, chain := range old {
		spec, _ := json.Marshal(map[string]any{"chain": string(ca.EncodeCertificates(chain...))})
		if _, err := store.Put(ctx, policy.Key{Kind: exchange.KindIntermediate, Name: m.name}, spec); err != nil {
			t.Fatal(err)
		}
	}
	// A status that does not decode, after them: once it is refused, the
	// members have applied a snapshot holding the stale intermediates.
	if _, err := store.Put(ctx, policy.Key{Kind: exchange.KindStatus, Name: "marker"}, []byte(`{"sequence":"x"}`)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for m := range old {
			if n := trusttest.Count(t, m.metrics, "meridian_trust_exchange_refused_total", "what", "status"); n != 1 {
				return fmt.Errorf("%s has not applied the marker", m.name)
			}
		}
		return nil
	})
	for m := range old {
		b, _ := m.svc.Bundles.Get(td)
		chain := m.svc.Authority.Chain()
		if i := slices.IndexFunc(b.X509Authorities(), func(r *x509.Certificate) bool { return chain[len(chain)-1].CheckSignatureFrom(r) == nil }); i < 0 ||
			bundle.KeyID(b.X509Authorities()[i]) != m.x.Status().GetCurrentRoot() {
			t.Fatalf("%s went back to an intermediate under the old root", m.name)
		}
		if n := trusttest.Count(t, m.metrics, "meridian_trust_exchange_refused_total", "what", "intermediate"); n != 0 {
			t.Fatalf("%s counted a stale intermediate as refused", m.name)
		}
	}
}

// Steps are refused from the wrong place and ahead of the mesh; what the
// store holds that no trusted root signed, or that is not this cluster's,
// is refused, counted, and changes nothing.
func TestRefusals(t *testing.T) {
	store, hub, edge := mesh(t)
	waitCaughtUp(t, hub, trustpb.RotationStep_ROTATION_STEP_RETIRE)
	code := func(err error) codes.Code { return status.Code(err) }

	if _, err := rotationServer(hub).Rotate(context.Background(), &trustpb.RotateRequest{Step: trustpb.RotationStep_ROTATION_STEP_PREPARE}); code(err) != codes.PermissionDenied {
		t.Fatalf("a step from the network: %v", err)
	}
	if _, err := rotationServer(edge).Rotate(local(), &trustpb.RotateRequest{Step: trustpb.RotationStep_ROTATION_STEP_PREPARE}); code(err) != codes.FailedPrecondition {
		t.Fatalf("a step on a cluster without the root: %v", err)
	}
	if _, err := rotationServer(hub).Rotate(local(), &trustpb.RotateRequest{Step: trustpb.RotationStep_ROTATION_STEP_ACTIVATE}); code(err) != codes.FailedPrecondition {
		t.Fatalf("activate before prepare: %v", err)
	}
	if _, err := rotationServer(hub).Rotate(local(), &trustpb.RotateRequest{}); code(err) != codes.InvalidArgument {
		t.Fatalf("no step: %v", err)
	}

	// A bundle update from another root, with a higher sequence number,
	// under a cluster name of its own.
	rogue := trusttest.NewCA(t, td, "rogue")
	b := trusttest.Bundle(rogue.Root)
	b.SetSequenceNumber(99)
	forged, err := bundle.Sign(b, rogue.Root.Certificate(), rogue.Root.Signer())
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(map[string]any{"update": string(forged), "sequence": 99})
	if _, err := store.Put(context.Background(), policy.Key{Kind: exchange.KindStatus, Name: "rogue"}, spec); err != nil {
		t.Fatal(err)
	}
	// An intermediate for edge's name but another key.
	other := trusttest.NewCA(t, td, "edge")
	spec, _ = json.Marshal(map[string]any{"chain": string(ca.EncodeCertificates(other.Authority.Chain()...))})
	if _, err := store.Put(context.Background(), policy.Key{Kind: exchange.KindIntermediate, Name: "edge"}, spec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, m := range []*member{hub, edge} {
			if n := trusttest.Count(t, m.metrics, "meridian_trust_exchange_refused_total", "what", "bundle_update"); n != 1 {
				return fmt.Errorf("%s refused %v bundle updates, want 1", m.name, n)
			}
		}
		if n := trusttest.Count(t, edge.metrics, "meridian_trust_exchange_refused_total", "what", "intermediate"); n != 1 {
			return fmt.Errorf("edge refused %v intermediates, want 1", n)
		}
		return nil
	})
	for _, m := range []*member{hub, edge} {
		if b, _ := m.svc.Bundles.Get(td); len(b.X509Authorities()) != 1 || b.X509Authorities()[0].Equal(rogue.Root.Certificate()) {
			t.Fatalf("%s's bundle changed", m.name)
		}
	}
	if edge.svc.Authority.Chain()[0].Equal(other.Authority.Chain()[0]) {
		t.Fatal("edge installed another key's intermediate")
	}
}

func rotationServer(m *member) trustpb.RootRotationServer {
	var srv trustpb.RootRotationServer
	m.x.Register(registrar(func(s any) { srv = s.(trustpb.RootRotationServer) }))
	return srv
}

// registrar hands the service a test registers to a func.
type registrar func(impl any)

func (r registrar) RegisterService(_ *grpc.ServiceDesc, impl any) { r(impl) }
