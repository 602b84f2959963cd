package lab

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
)

// Timing of the lab's workloads: a stopped instance stops getting traffic
// within seconds, yet a machine busy for a few seconds (CI, a shared
// laptop) does not expire every instance at once.
const (
	workloadTTL   = 10 * time.Second
	workloadGrace = time.Minute
)

// TrustDomain is the lab mesh's SPIFFE trust domain.
const TrustDomain = "lab.meridian"

// Ports of the trust component on each cluster's IP.
const TrustPort = 15012

// keys are the files of the lab's secrets.
type keys struct {
	gossip string // the gossip keyring (federation.keyFile)
	seal   string // the key sealing CA keys in etcd (trust.keyFile)
	caDir  string // the offline root; CADIR/CLUSTER is each intermediate
}

// meridiandConfig is cluster i's meridiand configuration: its addresses,
// its etcd data, failure detection tuned for clusters on one machine, and
// its intermediate CA under the lab's one root. The first cluster
// federates under the lab's key; the others get their seeds and keyring
// from `meridianctl join` (Lab.join), as a user's new cluster would.
// With rootHolder the first cluster starts from the root directory
// instead (Options.RootHolder).
func meridiandConfig(s *State, i int, k keys, rootHolder bool) daemon.Config {
	c := s.Clusters[i]
	cfg := daemon.DefaultConfig()
	cfg.Cluster = c.Cluster.Cluster
	cfg.DataDir = filepath.Join(c.DataDir, "etcd")
	cfg.GRPCAddr = c.GRPC
	cfg.AdminAddr = fmt.Sprintf("%s:%d", c.IP, AdminPort)
	cfg.Workload.DefaultTTL = metav1.Duration{Duration: workloadTTL}
	cfg.Workload.Grace = metav1.Duration{Duration: workloadGrace}
	cfg.ShutdownTimeout = metav1.Duration{Duration: 2 * time.Second}
	cfg.Federation = daemon.Federation{Replica: "meridiand-0", GossipAddr: c.Gossip, GRPCAddr: c.Federation, Preset: "local"}
	if c.Netns != "" {
		// Also on the namespace's loopback: join tokens are minted for
		// loopback callers only, and the lab mints them from inside the
		// namespace (Lab.JoinToken). The cluster's address is advertised.
		cfg.GRPCAddr = fmt.Sprintf(":%d", GRPCPort)
		cfg.Federation.AdvertiseAPIAddr = c.GRPC
	}
	if i == 0 {
		cfg.Federation.Enabled, cfg.Federation.KeyFile = true, k.gossip
	}
	if k.caDir != "" {
		cfg.Trust = daemon.Trust{Enabled: true, TrustDomain: TrustDomain, KeyFile: k.seal,
			CADir: filepath.Join(k.caDir, c.Name), CAAddr: fmt.Sprintf("%s:%d", c.IP, TrustPort)}
		if i == 0 && rootHolder {
			cfg.Trust.CADir, cfg.Trust.RootDir = "", k.caDir
		}
		cfg.XDS.TLSAddr = c.XDS
	}
	return cfg
}

// makeKeys writes the lab's secrets into dir: the gossip key, the sealing
// key, and — as `meridianctl trust init` and `trust issue-intermediate`
// do — a root CA with an intermediate per cluster.
func makeKeys(dir string, clusters []ClusterState) (keys, error) {
	k := keys{gossip: filepath.Join(dir, "gossip.key"), seal: filepath.Join(dir, "seal.key"), caDir: filepath.Join(dir, "ca")}
	for _, f := range []string{k.gossip, k.seal} {
		if err := writeKey(f); err != nil {
			return k, err
		}
	}
	td, err := spiffeid.TrustDomainFromString(TrustDomain)
	if err != nil {
		return k, fmt.Errorf("lab: %w", err)
	}
	if _, err := service.InitRootDir(k.caDir, ca.RootOptions{TrustDomain: td}, nil, nil); err != nil {
		return k, fmt.Errorf("lab: root CA: %w", err)
	}
	for _, c := range clusters {
		if _, err := service.IssueIntermediateDir(k.caDir, c.Name, 0); err != nil {
			return k, fmt.Errorf("lab: intermediate CA of %s: %w", c.Name, err)
		}
	}
	return k, nil
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

// writeKey writes a fresh 32-byte key, base64: the format of meridiand's
// federation.keyFile (AES-256 gossip key) and trust.keyFile.
func writeKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}
