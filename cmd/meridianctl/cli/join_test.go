package cli_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// startMeridiand runs a real meridiand in-process until the test ends.
func startMeridiand(t *testing.T, cfg daemon.Config) *daemon.Daemon {
	t.Helper()
	d, err := daemon.New(context.Background(), cfg, daemon.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func writeKeyFile(t *testing.T, path string, b byte) {
	t.Helper()
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(b)), 32)))
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestJoin: a new cluster joins a running mesh with what join prepares on
// the root holder's host — seeds, keyring, trust domain and a join token,
// merged into the new cluster's configuration file — then join checks it
// from both sides: gossip alive both ways, member identity verified, the
// same root trusted. Bad input around it is one line and a hint.
func TestJoin(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	gossipKeys, hubSeal, edgeSeal := filepath.Join(tmp, "gossip.keys"), filepath.Join(tmp, "hub.seal"), filepath.Join(tmp, "edge.seal")
	writeKeyFile(t, gossipKeys, 'g')
	writeKeyFile(t, hubSeal, 'h')
	writeKeyFile(t, edgeSeal, 'e')
	caDir := filepath.Join(tmp, "ca")
	if code, out, stderr := run(ctx, "trust", "init", "--trust-domain", "mesh.test", "--dir", caDir); code != 0 {
		t.Fatalf("trust init: %s %s", out, stderr)
	}

	// The mesh: one cluster, holding the root.
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "hub", Region: "east"}
	cfg.DataDir = filepath.Join(tmp, "hub")
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Federation = daemon.Federation{Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", KeyFile: gossipKeys, Preset: "local"}
	cfg.Trust = daemon.Trust{Enabled: true, TrustDomain: "mesh.test", KeyFile: hubSeal, RootDir: caDir, CAAddr: "127.0.0.1:0"}
	hub := startMeridiand(t, cfg).GRPCAddr()
	// Gossip starts with Run. The member table, not the header (which names
	// the node from the start), must list hub/r0 alive with its address:
	// join seeds gossip from it.
	testutil.Eventually(t, 30*time.Second, func() error {
		code, out, _ := run(ctx, "status", "--server", hub, "-o", "json")
		var st struct {
			Members []struct{ Name, State, GossipAddr string }
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return fmt.Errorf("status -o json: %d %s", code, out)
		}
		for _, m := range st.Members {
			if m.Name == "hub/r0" && m.State == "alive" && m.GossipAddr != "" {
				return nil
			}
		}
		return fmt.Errorf("hub's status does not list its own member alive yet:\n%s", out)
	})

	// The new cluster's configuration, before the join: its own name,
	// region, addresses and sealing key.
	edgeCfg := filepath.Join(tmp, "edge.yaml")
	if err := os.WriteFile(edgeCfg, []byte(`# edge's meridiand
cluster: {name: edge, region: west}
dataDir: `+filepath.Join(tmp, "edge")+`
grpcAddr: 127.0.0.1:0
adminAddr: 127.0.0.1:0
federation: {replica: r0, gossipAddr: "127.0.0.1:0", grpcAddr: "127.0.0.1:0", preset: local}
trust: {keyFile: `+edgeSeal+`, caAddr: "127.0.0.1:0"}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	joinDir := filepath.Join(tmp, "join-edge")
	code, out, stderr := run(ctx, "join", "--cluster", "edge", "--mesh", hub, "--gossip-key-file", gossipKeys, "--dir", joinDir, "--config", edgeCfg)
	if code != 0 {
		t.Fatalf("join --cluster: %d\n%s%s", code, out, stderr)
	}
	t.Logf("join --cluster:\n%s", out)
	for _, want := range []string{"Cluster edge may join the mesh through " + hub, "--trust-join-token mjt1.", "--gossip-key-file " + filepath.Join(joinDir, "gossip.keys"), "join --server EDGE-MERIDIAND:15010 --mesh " + hub} {
		if !strings.Contains(out, want) {
			t.Errorf("join output lacks %q", want)
		}
	}
	for f, mode := range map[string]os.FileMode{"gossip.keys": 0o600, "meridiand.yaml": 0o600, "roots.pem": 0o644} {
		if st, err := os.Stat(filepath.Join(joinDir, f)); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v; want mode %v", f, st, err, mode)
		}
	}
	if string(mustRead(t, filepath.Join(joinDir, "gossip.keys"))) != string(mustRead(t, gossipKeys)) {
		t.Error("the keyring written is not the mesh's")
	}
	frag, err := daemon.LoadConfigFile(filepath.Join(joinDir, "meridiand.yaml"))
	if err != nil || !frag.Federation.Enabled || len(frag.Federation.Seeds) != 1 || frag.Trust.Join.Token == "" || frag.Trust.TrustDomain != "mesh.test" {
		t.Fatalf("fragment: %+v %v", frag, err)
	}

	// The new cluster starts from its merged configuration: the first start
	// is the join.
	merged, err := daemon.LoadConfigFile(edgeCfg)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Cluster.Region != "west" || merged.Federation.Replica != "r0" || merged.Trust.KeyFile != edgeSeal || merged.Trust.Join != frag.Trust.Join {
		t.Fatalf("merge lost or missed fields: %+v", merged)
	}
	edge := startMeridiand(t, merged).GRPCAddr()

	code, out, stderr = run(ctx, "join", "--server", edge, "--mesh", hub, "--wait", "60s")
	if code != 0 || !strings.Contains(out, "Cluster edge has joined the mesh: hub sees it alive") || !strings.Contains(out, "trust: mesh.test") {
		t.Fatalf("join check: %d\n%s%s", code, out, stderr)
	}
	t.Logf("join --server:\n%s", out)
	code, out, _ = run(ctx, "join", "--server", edge, "--mesh", hub, "-o", "json")
	var check struct {
		Joined      bool     `json:"joined"`
		Verified    bool     `json:"verified"`
		SharedRoots []string `json:"sharedRoots"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &check) != nil || !check.Joined || !check.Verified || len(check.SharedRoots) != 1 {
		t.Fatalf("join check -o json: %d %s", code, out)
	}

	// The new member does not hold the root: a cluster's join token minted
	// there would be useless, so join refuses, naming the root holder;
	// without a token (an intermediate issued offline) any member will do.
	testutil.Eventually(t, 30*time.Second, func() error {
		code, _, stderr := run(ctx, "join", "--cluster", "third", "--mesh", edge, "--gossip-key-file", gossipKeys, "--dir", filepath.Join(tmp, "join-third"))
		if code == 0 || !strings.Contains(stderr, "cluster hub holds the root") || !strings.Contains(stderr, "Hint: run join on hub's") {
			return fmt.Errorf("join through a member that does not hold the root: %d %s", code, stderr)
		}
		return nil
	})
	if code, out, stderr := run(ctx, "join", "--cluster", "third", "--mesh", edge, "--gossip-key-file", gossipKeys, "--trust-token=false", "--dir", filepath.Join(tmp, "join-third"), "-o", "json"); code != 0 ||
		!strings.Contains(out, `"trustDomain": "mesh.test"`) || strings.Contains(out, `"token"`) {
		t.Fatalf("join --trust-token=false through edge: %d %s %s", code, out, stderr)
	}

	// A mesh whose root is kept offline (as the lab's): its one cluster runs
	// an intermediate issued by 'trust issue-intermediate', so no member
	// can sign a new cluster's intermediate and join says how instead.
	if code, out, stderr := run(ctx, "trust", "issue-intermediate", "--dir", caDir, "--cluster", "offline"); code != 0 {
		t.Fatalf("issue-intermediate: %s %s", out, stderr)
	}
	offSeal := filepath.Join(tmp, "offline.seal")
	writeKeyFile(t, offSeal, 'o')
	off := daemon.DefaultConfig()
	off.Cluster = registry.Cluster{Name: "offline", Region: "east"}
	off.DataDir = filepath.Join(tmp, "offline")
	off.GRPCAddr, off.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	off.Federation = daemon.Federation{Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", Insecure: true, Preset: "local"}
	off.Trust = daemon.Trust{Enabled: true, TrustDomain: "mesh.test", KeyFile: offSeal, CADir: filepath.Join(caDir, "offline"), CAAddr: "127.0.0.1:0"}
	offAddr := startMeridiand(t, off).GRPCAddr()
	testutil.Eventually(t, 30*time.Second, func() error {
		code, _, stderr := run(ctx, "join", "--cluster", "x", "--mesh", offAddr, "--gossip-insecure", "--dir", filepath.Join(tmp, "join-x"))
		if code == 0 || !strings.Contains(stderr, "no cluster of the mesh holds its root online") || !strings.Contains(stderr, "--trust-token=false") {
			return fmt.Errorf("join through a mesh with an offline root: %d %s", code, stderr)
		}
		return nil
	})

	// A cluster started with another keyring (its trust in order) never
	// joins: check waits, then says what each side sees.
	wrongKeys := filepath.Join(tmp, "wrong.keys")
	writeKeyFile(t, wrongKeys, 'w')
	wrong := daemon.DefaultConfig()
	wrong.Cluster = registry.Cluster{Name: "wrong", Region: "west"}
	wrong.DataDir = filepath.Join(tmp, "wrong")
	wrong.GRPCAddr, wrong.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	wrong.Federation = daemon.Federation{Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", KeyFile: wrongKeys, Preset: "local", Seeds: frag.Federation.Seeds}
	if code, out, stderr := run(ctx, "trust", "issue-intermediate", "--dir", caDir, "--cluster", "wrong"); code != 0 {
		t.Fatalf("issue-intermediate: %s %s", out, stderr)
	}
	wrong.Trust = daemon.Trust{Enabled: true, TrustDomain: "mesh.test", KeyFile: edgeSeal, CADir: filepath.Join(caDir, "wrong"), CAAddr: "127.0.0.1:0"}
	wrongAddr := startMeridiand(t, wrong).GRPCAddr()
	code, _, stderr = run(ctx, "join", "--server", wrongAddr, "--mesh", hub, "--wait", "2s")
	checkFailure(t, code, stderr, "cluster wrong has not joined after 2s: ")
	if !strings.Contains(stderr, "wrong sees hub unknown") || !strings.Contains(stderr, "hub sees wrong unknown") || !strings.Contains(stderr, "same keyring") {
		t.Errorf("join check of a cluster with the wrong keyring: %s", stderr)
	}

	// A standalone meridiand (not federated).
	solo := daemon.DefaultConfig()
	solo.Cluster = registry.Cluster{Name: "solo", Region: "east"}
	solo.DataDir = filepath.Join(tmp, "solo")
	solo.GRPCAddr, solo.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	soloAddr := startMeridiand(t, solo).GRPCAddr()

	badKeys := filepath.Join(tmp, "bad.keys")
	if err := os.WriteFile(badKeys, []byte("not base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherCfg := filepath.Join(tmp, "other.yaml")
	if err := os.WriteFile(otherCfg, []byte("cluster: {name: other, region: west}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(tmp, "scratch")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"join"}, "give --cluster NAME to prepare a join, or --server NEW-MERIDIAND to check one"},
		{[]string{"join", "--cluster", "x", "--server", edge}, "not both"},
		{[]string{"join", "--cluster", "Not_A_Label", "--gossip-insecure"}, `--cluster "Not_A_Label"`},
		{[]string{"join", "--cluster", "x", "--mesh", hub}, "--gossip-key-file is required"},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", filepath.Join(tmp, "absent")}, "--gossip-key-file: open"},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", badKeys}, "--gossip-key-file " + badKeys},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", gossipKeys, "--gossip-insecure"}, "not both"},
		{[]string{"join", "--cluster", "x", "--mesh", "127.0.0.1:1", "--gossip-insecure", "--dir", d}, "meridiand at 127.0.0.1:1 (--mesh) is unavailable"},
		{[]string{"join", "--cluster", "x", "--mesh", soloAddr, "--gossip-insecure", "--dir", d}, "(--mesh) is not federated"},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", gossipKeys, "--dir", d, "--seeds", "nope"}, `--seeds "nope"`},
		{[]string{"join", "--cluster", "edge", "--mesh", hub, "--gossip-key-file", gossipKeys, "--dir", d}, "cluster edge is already in the mesh"},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", gossipKeys, "--dir", d, "--ttl", "1000h"}, "join token refused"},
		{[]string{"join", "--cluster", "x", "--mesh", hub, "--gossip-key-file", gossipKeys, "--dir", d, "--config", otherCfg}, `cluster "other"'s configuration, not "x"'s`},
		{[]string{"join", "--server", edge, "--mesh", edge}, "name the same meridiand"},
		{[]string{"join", "--server", "127.0.0.1:1", "--mesh", hub}, "meridiand at 127.0.0.1:1 (--server) is unavailable"},
		{[]string{"join", "--server", soloAddr, "--mesh", hub}, "(--server) is not federated"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := run(ctx, append(tc.args, "--wait", "0s")...)
			checkFailure(t, code, stderr, tc.want)
		})
	}
}
