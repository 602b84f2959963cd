package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/exchange"
	"github.com/meridian-mesh/meridian/trust/service"
)

// The offline CA commands, then join-token and bundle against a real trust
// component (on a real embedded etcd) serving the admin API.
func TestTrustCommands(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	code, out, stderr := run(ctx, "trust", "init", "--trust-domain", "mesh.test", "--dir", dir)
	if code != 0 || !strings.Contains(out, "root CA for mesh.test") {
		t.Fatalf("init: %d %s %s", code, out, stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, service.RootKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("root key file: %v %v", st, err)
	}
	code, _, stderr = run(ctx, "trust", "init", "--trust-domain", "mesh.test", "--dir", dir)
	if code == 0 || !strings.Contains(stderr, "already holds a root") {
		t.Fatalf("second init: %d %s", code, stderr)
	}
	code, _, stderr = run(ctx, "trust", "init", "--trust-domain", "not a domain", "--dir", t.TempDir())
	checkFailure(t, code, stderr, "--trust-domain")
	code, out, stderr = run(ctx, "trust", "issue-intermediate", "--dir", dir, "--cluster", "eks-euw1")
	if code != 0 || !strings.Contains(out, "--trust-ca-dir "+filepath.Join(dir, "eks-euw1")) {
		t.Fatalf("issue-intermediate: %d %s %s", code, out, stderr)
	}
	for _, f := range []string{service.CACertFile, service.CAKeyFile, service.CertChainFile, service.RootCertFile} {
		if _, err := os.Stat(filepath.Join(dir, "eks-euw1", f)); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr = run(ctx, "trust", "issue-intermediate", "--dir", dir)
	if code == 0 || !strings.Contains(stderr, "--cluster is required") {
		t.Fatalf("no cluster: %d %s", code, stderr)
	}

	// A running trust component, as meridiand runs it.
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, _ := ca.NewSealer(bytes.Repeat([]byte{1}, 32))
	svc, err := service.New(ctx, service.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("mesh.test"), Cluster: "hub",
		Etcd: st.Client, Prefix: st.Key("trust"), Sealer: sealer, RootDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	g := grpc.NewServer()
	svc.RegisterGRPC(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { g.Serve(l) })
	defer func() { g.Stop(); wg.Wait() }()
	server := l.Addr().String()

	code, out, stderr = run(ctx, "trust", "join-token", "--cluster", "edge", "--server", server)
	if code != 0 || !strings.Contains(out, "spiffe://mesh.test/meridian/cluster/edge") || !strings.Contains(out, "--trust-join-token mjt1.") {
		t.Fatalf("join-token: %d %s %s", code, out, stderr)
	}
	code, out, _ = run(ctx, "trust", "join-token", "--namespace", "vm", "--service-account", "billing", "--server", server, "-o", "json")
	var resp struct {
		Token    string `json:"token"`
		SpiffeID string `json:"spiffeId"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.SpiffeID != "spiffe://mesh.test/ns/vm/sa/billing" {
		t.Fatalf("join-token json: %d %s", code, out)
	}
	if id, err := svc.JoinTokens.Redeem(ctx, resp.Token); err != nil || id.String() != resp.SpiffeID {
		t.Fatalf("printed token does not redeem: %v", err)
	}
	code, _, stderr = run(ctx, "trust", "join-token", "--server", server)
	if code == 0 || !strings.Contains(stderr, "give --cluster") {
		t.Fatalf("no identity: %d %s", code, stderr)
	}

	pems := t.TempDir()
	code, out, stderr = run(ctx, "trust", "bundle", "--server", server, "--pem-dir", pems)
	if code != 0 || !strings.Contains(out, "mesh.test") || !strings.Contains(out, "true") {
		t.Fatalf("bundle: %d %s %s", code, out, stderr)
	}
	if roots, err := ca.ParseCertificates(mustRead(t, filepath.Join(pems, "mesh.test.pem"))); err != nil || len(roots) != 1 {
		t.Fatalf("bundle PEM: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trust rotate against a real trust component and exchange, in a mesh
// where one cluster never publishes its trust state: a step is refused
// ahead of it, and with --force the wait for it ends at --wait-timeout
// with an error naming it, its state and why it lags.
func TestTrustRotateWaitTimeout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	if code, _, stderr := run(ctx, "trust", "init", "--trust-domain", "mesh.test", "--dir", dir); code != 0 {
		t.Fatal(stderr)
	}
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, _ := ca.NewSealer(bytes.Repeat([]byte{1}, 32))
	svc, err := service.New(ctx, service.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("mesh.test"), Cluster: "hub",
		Etcd: st.Client, Prefix: st.Key("trust"), Sealer: sealer, RootDir: dir, ListenAddr: "-"})
	if err != nil {
		t.Fatal(err)
	}
	policies, err := policy.Open(ctx, policy.Options{Node: "hub/r0"})
	if err != nil {
		t.Fatal(err)
	}
	defer policies.Close()
	x, err := exchange.New(exchange.Config{Trust: svc, Cluster: "hub", Store: policies,
		Clusters: func() map[string]string { return map[string]string{"hub": "alive", "far": "suspect"} }})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	x.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { g.Serve(l) })
	for _, run := range []func(context.Context) error{svc.Run, x.RunApply, x.RunPublish} {
		wg.Go(func() { _ = run(rctx) })
	}
	defer func() { cancel(); g.Stop(); wg.Wait() }()
	server := l.Addr().String()

	testutil.Eventually(t, 10*time.Second, func() error {
		code, out, stderr := run(ctx, "trust", "rotate", "status", "--server", server)
		if code != 0 || !strings.Contains(out, "(current)") || !strings.Contains(out, "(no trust state published)") {
			return fmt.Errorf("status: %d %s %s", code, out, stderr)
		}
		return nil
	})
	code, _, stderr := run(ctx, "trust", "rotate", "prepare", "--server", server)
	if code == 0 || !strings.Contains(stderr, "far (suspect): no trust state published") || !strings.Contains(stderr, "force") {
		t.Fatalf("prepare ahead of a cluster: %d %s", code, stderr)
	}
	code, out, stderr := run(ctx, "trust", "rotate", "prepare", "--force", "--server", server, "--wait-timeout", "1s", "--poll", "100ms")
	checkFailure(t, code, stderr, "prepare: 1 cluster(s) did not catch up within --wait-timeout 1s: far (suspect): no trust state published")
	if !strings.Contains(out, "prepare: a new root joins every bundle (2 roots)") || !strings.Contains(stderr, "trust rotate activate") {
		t.Fatalf("prepare --force: %s %s", out, stderr)
	}
}
