package workloadapi_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gsworkloadapi "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/trust/workloadapi"
)

var (
	td     = trusttest.TD
	web    = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	nobody = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/nobody")
)

type fixture struct {
	socket   string
	svids    *svid.Manager
	bundles  *bundle.Source
	registry *workloadapi.Registry
	reg      *prometheus.Registry
}

func u32(v uint32) *uint32 { return &v }

// start runs a Workload API server on a socket in a directory every user
// can reach, with the SVID manager running.
func start(t *testing.T, regs ...workloadapi.Registration) *fixture {
	c := trusttest.NewCA(t, td, "a")
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fixture{
		socket:   filepath.Join(dir, "agent.sock"),
		svids:    svid.NewManager(svid.ManagerConfig{Minter: c.Authority, Logger: trusttest.Logger()}),
		bundles:  bundle.NewSource(trusttest.Bundle(c.Root)),
		registry: workloadapi.NewRegistry(regs...),
		reg:      prometheus.NewRegistry(),
	}
	srv, err := workloadapi.New(workloadapi.Config{SocketPath: f.socket, SVIDs: f.svids, Bundles: f.bundles, TrustDomain: td, Registry: f.registry, Logger: trusttest.Logger(), Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	wg.Go(func() { f.svids.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := os.Stat(f.socket)
		return err
	})
	return f
}

func (f *fixture) addr() string { return "unix://" + f.socket }

// go-spiffe's own X509Source gets the SVID, and follows rotations and
// bundle changes.
func TestGoSPIFFEClient(t *testing.T) {
	f := start(t, workloadapi.Registration{ID: web, UID: u32(uint32(os.Getuid()))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := gsworkloadapi.NewX509Source(ctx, gsworkloadapi.WithClientOptions(gsworkloadapi.WithAddr(f.addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, err := src.GetX509SVID()
	if err != nil || s.ID != web || len(s.Certificates) != 2 {
		t.Fatalf("SVID %v: %v", s, err)
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
		t.Fatal(err)
	}

	first := s.Certificates[0].SerialNumber
	if err := f.svids.RotateAll(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		s, _ := src.GetX509SVID()
		if s.Certificates[0].SerialNumber.Cmp(first) == 0 {
			return errors.New("rotation not streamed")
		}
		return nil
	})

	other, _ := ca.NewRoot(ca.RootOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("partner.test")})
	f.bundles.Set(trusttest.Bundle(other))
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := src.GetX509BundleForTrustDomain(other.TrustDomain())
		return err
	})
}

// spire-agent, built from github.com/spiffe/spire, is an independent
// client: `spire-agent api fetch x509 -output json` must print the SVID.
func TestSpireAgentClient(t *testing.T) {
	f := start(t, workloadapi.Registration{ID: web, UID: u32(uint32(os.Getuid()))}, workloadapi.Registration{ID: nobody, UID: u32(65534)})
	agent := spireAgent(t)
	out := fetchX509(t, exec.Command(agent, "api", "fetch", "x509", "-socketPath", f.socket, "-output", "json"))
	if got := svidIDs(t, out); len(got) != 1 || got[0] != web.String() {
		t.Fatalf("spire-agent got %v", got)
	}

	t.Run("another user gets its own identity", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("needs root to run spire-agent as another user")
		}
		cmd := exec.Command(agent, "api", "fetch", "x509", "-socketPath", f.socket, "-output", "json")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = "/"
		if got := svidIDs(t, fetchX509(t, cmd)); len(got) != 1 || got[0] != nobody.String() {
			t.Fatalf("uid 65534 got %v", got)
		}
	})
}

func spireAgent(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../scripts/spire-agent.sh").Output()
	if err != nil {
		t.Fatalf("building spire-agent: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func fetchX509(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	return out
}

// svidIDs reads spire-agent's JSON (the X509SVIDResponse as protojson),
// checking that each SVID's certificate carries the ID it is listed under.
func svidIDs(t *testing.T, out []byte) []string {
	t.Helper()
	var resp struct {
		SVIDs []struct {
			SPIFFEID string `json:"spiffe_id"`
			X509SVID []byte `json:"x509_svid"`
		} `json:"svids"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("spire-agent output is not the expected JSON: %v\n%s", err, out)
	}
	var ids []string
	for _, s := range resp.SVIDs {
		certs, err := x509.ParseCertificates(s.X509SVID)
		if err != nil || len(certs) == 0 || certs[0].URIs[0].String() != s.SPIFFEID {
			t.Fatalf("SVID certificate does not match %s: %v", s.SPIFFEID, err)
		}
		ids = append(ids, s.SPIFFEID)
	}
	return ids
}

// A process no registration matches gets PermissionDenied; a call without
// the security header gets InvalidArgument. Both are counted.
func TestRefusals(t *testing.T) {
	f := start(t, workloadapi.Registration{ID: web, UID: u32(uint32(os.Getuid()) + 4242)}, workloadapi.Registration{ID: nobody})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := gsworkloadapi.New(ctx, gsworkloadapi.WithAddr(f.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.FetchX509SVID(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unregistered caller: %v", err)
	}

	conn, err := grpc.NewClient(f.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "security header") {
		t.Fatalf("no header: %v", err)
	}
	if _, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchJWTSVID(ctx, &workload.JWTSVIDRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("JWT: %v", err)
	}
	testutil.Eventually(t, 2*time.Second, func() error {
		for code, want := range map[string]float64{"PermissionDenied": 1, "InvalidArgument": 1} {
			if n := trusttest.Count(t, f.reg, "meridian_trust_workloadapi_calls_total", "method", "FetchX509SVID", "code", code); n != want {
				return fmt.Errorf("%s counted %v", code, n)
			}
		}
		return nil
	})
}

func TestRegistryMatching(t *testing.T) {
	me := workloadapi.Caller{PID: int32(os.Getpid()), UID: 1000, GID: 100}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	r := workloadapi.NewRegistry(
		workloadapi.Registration{ID: web, UID: u32(1000), Exe: exe},
		workloadapi.Registration{ID: web, GID: u32(100)}, // duplicate identity
		workloadapi.Registration{ID: nobody, UID: u32(1000), Exe: "/usr/bin/other"},
		workloadapi.Registration{ID: nobody}, // no selector: matches nobody
	)
	if got := r.Attest(me); len(got) != 1 || got[0] != web {
		t.Fatalf("attested %v", got)
	}
	r.Set([]workloadapi.Registration{{ID: nobody, GID: u32(100)}})
	if got := r.Attest(me); len(got) != 1 || got[0] != nobody {
		t.Fatalf("after Set: %v", got)
	}
}
