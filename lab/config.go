package lab

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/daemon"
)

// Timing of the lab's workloads: short, so that a stopped instance stops
// getting traffic within seconds.
const (
	workloadTTL   = 3 * time.Second
	workloadGrace = 30 * time.Second
)

// meridiandConfig is cluster i's meridiand configuration: its addresses,
// its etcd data, gossip with every other cluster through the lab's key,
// and failure detection tuned for clusters on one machine.
func meridiandConfig(s *State, i int, keyFile string) daemon.Config {
	c := s.Clusters[i]
	cfg := daemon.DefaultConfig()
	cfg.Cluster = c.Cluster.Cluster
	cfg.DataDir = filepath.Join(c.DataDir, "etcd")
	cfg.GRPCAddr = c.GRPC
	cfg.AdminAddr = fmt.Sprintf("%s:%d", c.IP, AdminPort)
	cfg.Workload.DefaultTTL = metav1.Duration{Duration: workloadTTL}
	cfg.Workload.Grace = metav1.Duration{Duration: workloadGrace}
	cfg.ShutdownTimeout = metav1.Duration{Duration: 2 * time.Second}
	var seeds []string
	for j, o := range s.Clusters {
		if j != i {
			seeds = append(seeds, o.Gossip)
		}
	}
	cfg.Federation = daemon.Federation{
		Enabled: true, Replica: "meridiand-0", GossipAddr: c.Gossip, GRPCAddr: c.Federation,
		Seeds: seeds, KeyFile: keyFile, Preset: "local",
	}
	return cfg
}

// writeConfig writes a meridiand configuration as YAML, as a user would.
func writeConfig(path string, cfg daemon.Config) error {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	head := "# meridiand configuration written by `meridianctl lab up`.\n"
	return os.WriteFile(path, append([]byte(head), b...), 0o644)
}

// writeGossipKey writes a fresh 32-byte gossip key (AES-256), base64, the
// format meridiand's federation.keyFile reads.
func writeGossipKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}
