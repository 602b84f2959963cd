package sidecar_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/meridian-mesh/meridian/sidecar"
)

// TestEnrollFlags: --xds-tls, --ca-url, --join-token-file and --root-cert
// go together, and bad values are named by their flag.
func TestEnrollFlags(t *testing.T) {
	dir := t.TempDir()
	noTD := filepath.Join(dir, "plain.pem")
	// A certificate without a SPIFFE URI SAN (the Go test root).
	if err := os.WriteFile(noTD, []byte(`-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw
DgYDVQQKEwdBY21lIENvMB4XDTE3MTAyMDE5NDMwNloXDTE4MTAyMDE5NDMwNlow
EjEQMA4GA1UEChMHQWNtZSBDbzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD0d
7VNhbWvZLWPuj/RtHFjvtJBEwOkhbN/BnnE8rnZR8+sbwnc/KhCk3FhnpHZnQz7B
5aETbbIgmuvewdjvSBSjYzBhMA4GA1UdDwEB/wQEAwICpDATBgNVHSUEDDAKBggr
BgEFBQcDATAPBgNVHRMBAf8EBTADAQH/MCkGA1UdEQQiMCCCDmxvY2FsaG9zdDo1
NDUzgg4xMjcuMC4wLjE6NTQ1MzAKBggqhkjOPQQDAgNIADBFAiEA2zpJEPQyz6/l
Wf86aX6PepsntZv2GYlA5UpabfT2EZICICpJ5h/iI+i341gBmLiAFQOyTDT+/wQc
6MF9+Yw1Yy0t
-----END CERTIFICATE-----
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--xds-address", "127.0.0.1:15010", "--id", "p1", "--cluster", "c1", "--namespace", "shop", "--upstream", "127.0.0.1:9001=web:80"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca-url", "https://cp:15012"}, "add --join-token-file, --root-cert, --xds-tls"},
		{[]string{"--xds-tls"}, "add --ca-url, --join-token-file, --root-cert"},
		{[]string{"--xds-tls", "--ca-url", "https://cp:15012", "--join-token-file", "t", "--root-cert", filepath.Join(dir, "none.pem")}, "--root-cert: open"},
		{[]string{"--xds-tls", "--ca-url", "https://cp:15012", "--join-token-file", "t", "--root-cert", noTD}, "--ca-url: enroll: the root certificates name no SPIFFE trust domain"},
		{[]string{"--xds-tls", "--ca-url", "http://cp:15012", "--join-token-file", "t", "--root-cert", noTD}, "--ca-url: enroll: CA URL \"http://cp:15012\": want https://HOST:PORT"},
		{[]string{"--xds-tls", "--ca-url", "https://cp:15012", "--join-token-file", "t", "--root-cert", noTD, "--xds-ca", noTD}, "give it or --xds-ca/--xds-cert, not both"},
	} {
		_, _, err := configOf(t, base, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// flagBase is a proxy's minimum flags, for tests of one more flag.
var flagBase = []string{"--xds-address", "127.0.0.1:15010", "--id", "p1", "--cluster", "c1", "--namespace", "shop", "--xds-token-file="}

// configOf parses base and args as the command does and builds the
// Config; the access-log file, if any, is closed with the test.
func configOf(t *testing.T, base, args []string) (sidecar.Options, sidecar.Config, error) {
	t.Helper()
	var o sidecar.Options
	fs := pflag.NewFlagSet("meridian-proxy", pflag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(append(append([]string{}, base...), args...)); err != nil {
		t.Fatal(err)
	}
	cfg, closer, err := o.Config(io.Discard)
	if err == nil {
		t.Cleanup(func() { closer.Close() })
	}
	return o, cfg, err
}

// TestGCHeapFloorFlag: 16 MiB by default, 0 turns it off, and a negative
// value is refused by name.
func TestGCHeapFloorFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    uint64
		wantErr string
	}{
		{nil, 16 << 20, ""},
		{[]string{"--gc-heap-floor-mb", "0"}, 0, ""},
		{[]string{"--gc-heap-floor-mb", "64"}, 64 << 20, ""},
		{[]string{"--gc-heap-floor-mb", "-1"}, 0, "--gc-heap-floor-mb: -1: want 0 or more"},
	} {
		_, cfg, err := configOf(t, flagBase, tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.GCHeapFloor != tc.want {
			t.Errorf("%v: GCHeapFloor %d, want %d", tc.args, cfg.GCHeapFloor, tc.want)
		}
	}
}

// TestSchedSliceFlag: 100µs by default, 0 leaves the kernel's, and values
// outside the kernel's bounds are refused by name.
func TestSchedSliceFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, 100 * time.Microsecond, ""},
		{[]string{"--sched-slice", "0"}, 0, ""},
		{[]string{"--sched-slice", "3ms"}, 3 * time.Millisecond, ""},
		{[]string{"--sched-slice", "50us"}, 0, "--sched-slice: 50µs: want 0 or 100µs to 100ms"},
		{[]string{"--sched-slice", "1s"}, 0, "--sched-slice: 1s: want 0 or 100µs to 100ms"},
		{[]string{"--sched-slice", "-1ms"}, 0, "--sched-slice: -1ms: want 0 or 100µs to 100ms"},
	} {
		o, _, err := configOf(t, flagBase, tc.args)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if o.SchedSlice != tc.want {
			t.Errorf("%v: SchedSlice %v, want %v", tc.args, o.SchedSlice, tc.want)
		}
	}
}

// TestNodeFromEnvironment: the node's identity and locality come from the
// environment a pod or a VM unit sets (POD_NAME and POD_NAMESPACE as the
// downward API gives them, MERIDIAN_*), and a flag overrides each.
func TestNodeFromEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"POD_NAME": "web-7d9f", "POD_NAMESPACE": "shop", "SERVICE_ACCOUNT": "web", "MERIDIAN_CLUSTER": "eks-euw1",
		"MERIDIAN_LOCALITY": "eu-west-1/eu-west-1a", "MERIDIAN_MODE": "sidecar", "MERIDIAN_LABELS": "app=web,version=v2",
		"MERIDIAN_NODE_ID": "", "MERIDIAN_NAMESPACE": "", "MERIDIAN_SERVICE_ACCOUNT": "",
	} {
		t.Setenv(k, v)
	}
	base := []string{"--xds-address", "127.0.0.1:15010", "--upstream", "127.0.0.1:9001=web:80"}
	_, cfg, err := configOf(t, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Node
	if n.ID != "web-7d9f.shop" || n.Namespace != "shop" || n.ServiceAccount != "web" || n.Cluster != "eks-euw1" ||
		n.Locality != "eu-west-1/eu-west-1a" || n.Mode != "sidecar" || n.Labels["app"] != "web" || n.Labels["version"] != "v2" {
		t.Fatalf("node from the environment: %+v", n)
	}
	_, cfg, err = configOf(t, base, []string{"--id", "p1", "--cluster", "onprem-dc1", "--locality", "onprem-east/dc1-z1", "--namespace", "data"})
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Node; n.ID != "p1" || n.Cluster != "onprem-dc1" || n.Locality != "onprem-east/dc1-z1" || n.Namespace != "data" {
		t.Fatalf("flags over the environment: %+v", n)
	}
}
