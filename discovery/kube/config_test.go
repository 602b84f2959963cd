package kube

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func writeTwoContexts(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["east"] = &clientcmdapi.Cluster{Server: "https://east.example:6443"}
	cfg.Clusters["west"] = &clientcmdapi.Cluster{Server: "https://west.example:6443"}
	cfg.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["east"] = &clientcmdapi.Context{Cluster: "east", AuthInfo: "me"}
	cfg.Contexts["west"] = &clientcmdapi.Context{Cluster: "west", AuthInfo: "me"}
	cfg.CurrentContext = "east"
	path := filepath.Join(t.TempDir(), "config")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRESTConfig(t *testing.T) {
	path := writeTwoContexts(t)
	t.Setenv("KUBECONFIG", "")
	for _, tc := range []struct{ context, want string }{{"", "https://east.example:6443"}, {"west", "https://west.example:6443"}} {
		cfg, err := LoadRESTConfig(path, tc.context)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != tc.want {
			t.Errorf("context %q: host %s, want %s", tc.context, cfg.Host, tc.want)
		}
	}
	// $KUBECONFIG when no path is given, as kubectl.
	t.Setenv("KUBECONFIG", path)
	cfg, err := LoadRESTConfig("", "west")
	if err != nil || cfg.Host != "https://west.example:6443" {
		t.Fatalf("from $KUBECONFIG: %v %v", cfg, err)
	}
	if _, err := LoadRESTConfig(path, "north"); err == nil || !strings.Contains(err.Error(), "north") {
		t.Fatalf("unknown context: err = %v, want one naming it", err)
	}
	if _, err := LoadRESTConfig(filepath.Join(t.TempDir(), "missing"), ""); err == nil {
		t.Fatal("a missing explicit kubeconfig must fail")
	}
}
