package daemon_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gsworkloadapi "github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/casvc"
	"github.com/meridian-mesh/meridian/trust/service"
)

// A meridiand holding the mesh root: it seals the root from the CA
// directory into etcd, serves the trust admin API (meridianctl trust), the
// CA service and the Workload API, and comes back from etcd alone after a
// restart.
func TestMeridiandTrust(t *testing.T) {
	t.Setenv(ca.EnvKey, base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	caDir := filepath.Join(t.TempDir(), "ca")
	if code, _, stderr := ctl("trust", "init", "--trust-domain", "mesh.test", "--dir", caDir); code != 0 {
		t.Fatal(stderr)
	}
	dataDir := t.TempDir()
	socket := filepath.Join(t.TempDir(), "agent.sock")
	uid := uint32(os.Getuid())
	trustOn := func(rootDir string) func(*daemon.Config) {
		return func(c *daemon.Config) {
			c.Trust = daemon.Trust{Enabled: true, TrustDomain: "mesh.test", RootDir: rootDir, CAAddr: "127.0.0.1:0", WorkloadSocket: socket,
				Workloads: []daemon.TrustWorkload{{SPIFFEID: "spiffe://mesh.test/ns/lab/sa/tester", UID: &uid}}}
		}
	}
	r := startDaemon(t, dataDir, trustOn(caDir))
	server := r.d.GRPCAddr()

	code, out, stderr := ctl("trust", "bundle", "--server", server)
	if code != 0 || !strings.Contains(out, "mesh.test") {
		t.Fatalf("trust bundle: %d %s %s", code, out, stderr)
	}
	code, out, stderr = ctl("trust", "join-token", "--cluster", "eks-euw1", "--server", server)
	if code != 0 || !strings.Contains(out, "--trust-join-url https://"+r.d.Trust.CAAddr()) {
		t.Fatalf("trust join-token: %d %s %s", code, out, stderr)
	}

	// The CA service, as a joining cluster first sees it.
	root, err := service.LoadRootDir(caDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := casvc.FetchPinnedBundle(ctx, "https://"+r.d.Trust.CAAddr(), root.TrustDomain(), bundle.KeyID(root.Certificate())); err != nil {
		t.Fatal(err)
	}

	// The Workload API, to this very process.
	src, err := gsworkloadapi.NewX509Source(ctx, gsworkloadapi.WithClientOptions(gsworkloadapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.GetX509SVID()
	src.Close()
	if err != nil || s.ID != spiffeid.RequireFromString("spiffe://mesh.test/ns/lab/sa/tester") {
		t.Fatalf("Workload API: %v %v", s, err)
	}
	first := r.d.Trust.Authority.Chain()[0]
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// Restart from etcd alone.
	again := startDaemon(t, dataDir, trustOn(""))
	if !again.d.Trust.Authority.Chain()[0].Equal(first) {
		t.Fatal("restart changed the intermediate")
	}
}

func TestTrustConfigIsChecked(t *testing.T) {
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "dc1", Region: "east"}
	cfg.Trust = daemon.Trust{Enabled: true, TrustDomain: "Not A Domain", CAAddr: "nope", Join: daemon.TrustJoin{URL: "https://x"},
		Workloads: []daemon.TrustWorkload{{SPIFFEID: "spiffe://mesh.test/ns/a/sa/b"}}}
	err := cfg.Validate()
	for _, want := range []string{"trust.trustDomain (--trust-domain)", "trust.caAddr (--trust-ca-addr)", "trust.join (--trust-join-url)", "trust.workloads[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
