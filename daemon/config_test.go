package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "meridiand.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsOverrideTheFile(t *testing.T) {
	file := writeFile(t, `
cluster:
  name: eks-euw1
  region: eu-west-1
  network: vpc-1
  labels: {provider: eks, jurisdiction: eu}
grpcAddr: ":16010"
workload:
  defaultTTL: 45s
log:
  format: json
`)
	cfg, err := daemon.ConfigFromArgs([]string{"--config", file, "--region", "eu-central-1", "--labels", "provider=eks", "--workload-grace", "2m"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Name != "eks-euw1" || cfg.Cluster.Network != "vpc-1" || cfg.GRPCAddr != ":16010" || cfg.Log.Format != "json" ||
		cfg.Workload.DefaultTTL.Duration != 45*time.Second {
		t.Fatalf("file values lost: %+v", cfg)
	}
	if cfg.Cluster.Region != "eu-central-1" || len(cfg.Cluster.Labels) != 1 || cfg.Workload.Grace.Duration != 2*time.Minute {
		t.Fatalf("flags did not win: %+v", cfg)
	}
	if cfg.AdminAddr != ":15014" || cfg.Log.Level != "info" {
		t.Fatalf("defaults lost: %+v", cfg)
	}
	// Without a file, flags alone.
	cfg, err = daemon.ConfigFromArgs([]string{"--cluster", "lab1", "--region", "r1", "--etcd-endpoints", "http://127.0.0.1:2379,http://127.0.0.1:2380"})
	if err != nil || len(cfg.Etcd.Endpoints) != 2 {
		t.Fatalf("flags only: %+v, %v", cfg, err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		file string
		want []string
	}{
		{"nothing", nil, "", []string{"cluster.name (--cluster): Required value", "cluster.region (--region): Required value"}},
		{"bad values", []string{"--cluster", "Bad_Name", "--region", "r", "--grpc-addr", "15010", "--admin-addr", ":99999",
			"--etcd-endpoints", "etcd-0:2379", "--log-format", "xml", "--workload-ttl", "10ms", "--labels", "-x=y"}, "",
			[]string{"cluster.name (--cluster): Invalid value", "grpcAddr (--grpc-addr)", "adminAddr (--admin-addr)",
				"etcd.endpoints[0] (--etcd-endpoints)", "log.format (--log-format): Unsupported value", "workload.defaultTTL (--workload-ttl)", "cluster.labels (--labels)"}},
		{"kubeconfig without --kube", []string{"--cluster", "c", "--region", "r", "--kubeconfig", "/x"}, "", []string{"kube.kubeconfig (--kubeconfig): Forbidden"}},
		{"TLS for the embedded etcd", []string{"--cluster", "c", "--region", "r", "--etcd-ca", "/x"}, "", []string{"etcd.caFile (--etcd-ca): Forbidden"}},
		{"missing key", []string{"--cluster", "c", "--region", "r", "--etcd-endpoints", "https://e:2379", "--etcd-cert", "/nope"}, "",
			[]string{"etcd.keyFile (--etcd-key): Required value", "etcd.certFile (--etcd-cert): Invalid value"}},
		{"same address twice", []string{"--cluster", "c", "--region", "r", "--grpc-addr", ":15010", "--admin-addr", ":15010"}, "", []string{"adminAddr (--admin-addr): Duplicate value"}},
		{"unknown flag", []string{"--clutser", "c"}, "", []string{"unknown flag: --clutser"}},
		{"argument", []string{"--cluster", "c", "--region", "r", "run"}, "", []string{`unexpected argument "run"`}},
		{"unknown file field", nil, "cluster: {name: c, region: r}\nclustr: x\n", []string{`unknown field "clustr"`}},
		{"bad file duration", nil, "cluster: {name: c, region: r}\nshutdownTimeout: soon\n", []string{"soon"}},
		{"missing file", []string{"--config", "/does/not/exist"}, "", []string{"no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, tc.file))
			}
			_, err := daemon.ConfigFromArgs(args)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
