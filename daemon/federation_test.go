package daemon_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// Two meridiands federate from their configuration: a workload registered
// with one shows up in the other's registry, both clusters show in
// `meridianctl status` and on /debug/federation.
func TestTwoDaemonsFederate(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "gossip.keys")
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	if err := os.WriteFile(keyFile, []byte("# mesh key\n"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	federate := func(cluster, region string, seeds ...string) func(*daemon.Config) {
		return func(c *daemon.Config) {
			c.Cluster = registry.Cluster{Name: cluster, Region: region}
			c.Federation = daemon.Federation{
				Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
				Seeds: seeds, KeyFile: keyFile, Preset: "local",
			}
		}
	}
	one := startDaemon(t, t.TempDir(), federate("dc1", "east"))
	two := startDaemon(t, t.TempDir(), federate("dc2", "west", one.d.Federation.GossipAddr()))

	code, out, errOut := ctl("workload", "register", "--server", one.d.GRPCAddr(), "--service", "web", "--namespace", "shop",
		"--address", "10.0.0.5:8080", "--locality", "east/z1")
	if code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		seg := two.d.Registry.View().Segment("dc1")
		if seg == nil || seg.EndpointCount() != 1 {
			return fmt.Errorf("dc2 does not hold dc1's workload yet")
		}
		return nil
	})
	// dc1/r0 appears only in the member table (the header names dc2/r0).
	code, out, errOut = ctl("status", "--server", two.d.GRPCAddr())
	if code != 0 || !strings.Contains(out, "dc1") || !strings.Contains(out, "dc1/r0") || !strings.Contains(out, "alive") {
		t.Fatalf("status: code %d\n%s%s", code, out, errOut)
	}
	t.Logf("status:\n%s", out)
	code, out, _ = ctl("status", "--server", one.d.GRPCAddr(), "-o", "json")
	if code != 0 || !strings.Contains(out, `"cluster": "dc1"`) || !strings.Contains(out, `"leader": true`) {
		t.Fatalf("status -o json: %d\n%s", code, out)
	}
	status, body := get(t, "http://"+one.d.AdminAddr()+"/debug/federation")
	if status != 200 || !strings.Contains(body, "dc2/r0") {
		t.Fatalf("/debug/federation: %d\n%s", status, body)
	}
}

// Without federation, status says so and how to turn it on.
func TestStatusWithoutFederation(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	code, _, errOut := ctl("status", "--server", d.d.GRPCAddr())
	if code == 0 || !strings.Contains(errOut, "not federated") || !strings.Contains(errOut, "--federate") {
		t.Fatalf("status without federation: %d %s", code, errOut)
	}
}

func TestFederationConfigIsChecked(t *testing.T) {
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "dc1", Region: "east"}
	cfg.Federation = daemon.Federation{Enabled: true, Preset: "moon", GossipAddr: "nope"}
	err := cfg.Validate()
	for _, want := range []string{"federation.preset (--gossip-preset)", "federation.keyFile (--gossip-key-file)", "federation.gossipAddr (--gossip-addr)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}
