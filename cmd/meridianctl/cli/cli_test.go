package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/internal/testutil"
)

func run(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Execute(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// checkFailure asserts a non-zero exit with one error line and one hint
// line, the error containing want.
func checkFailure(t *testing.T, code int, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code == 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Error: ") || !strings.HasPrefix(lines[1], "Hint: ") ||
		!strings.Contains(lines[0], want) {
		t.Fatalf("exit %d, stderr %q; want one error line with %q and a hint", code, stderr, want)
	}
}

func TestWrongUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"workload", "register", "--colour", "red"}, "unknown flag: --colour"},
		{[]string{"workload", "register", "--service", "web"}, `required flag(s) "address", "locality", "namespace" not set`},
		{[]string{"workload", "register", "--service", "web", "--namespace", "shop", "--address", "10.0.0.1:80", "--locality", "r", "--ttl", "soon"}, `invalid argument "soon" for "--ttl"`},
		{[]string{"workload", "heartbeat"}, "accepts 1 arg(s), received 0"},
		{[]string{"workload", "deregister"}, "give workload IDs, or --service, --namespace and --address"},
		{[]string{"workload", "deregister", "--address", "10.0.0.1:80"}, "if any flags in the group [service namespace address] are set they must all be set"},
		{[]string{"workload", "list", "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{[]string{"workload", "list", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"workloads", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "meridianctl"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := run(context.Background(), tc.args...)
			checkFailure(t, code, stderr, tc.want)
			if !strings.Contains(stderr, "--help'") {
				t.Fatalf("the hint does not point at --help: %q", stderr)
			}
		})
	}
}

func TestUnreachableServer(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens there now
	code, _, stderr := run(context.Background(), "workload", "list", "--server", addr)
	checkFailure(t, code, stderr, "meridiand at "+addr+" is unavailable: dial tcp "+addr+": connect: connection refused")

	// A server that accepts and never answers: the timeout says so.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	code, _, stderr = run(context.Background(), "workload", "list", "--server", lis.Addr().String(), "--timeout", "300ms")
	checkFailure(t, code, stderr, "no answer from meridiand at "+lis.Addr().String()+" within 300ms")

	// A gRPC server without the Workload API.
	bare := startFake(t, nil)
	code, _, stderr = run(context.Background(), "workload", "list", "--server", bare)
	checkFailure(t, code, stderr, "does not serve this API")
}

// fake is a hand-written Workload API for the CLI's own behaviour; the
// proof against the real server is meridiand's test.
type fake struct {
	workloadpb.UnimplementedWorkloadServiceServer
	mu          sync.Mutex
	calls       []string
	forgetFirst bool // the first heartbeat answers NotFound
}

func (f *fake) record(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return len(f.calls)
}

func (f *fake) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, " ")
}

func (f *fake) Register(_ context.Context, r *workloadpb.RegisterRequest) (*workloadpb.RegisterResponse, error) {
	f.record("register")
	ttl := r.GetTtl()
	if ttl == nil {
		ttl = durationpb.New(30 * time.Second)
	}
	return &workloadpb.RegisterResponse{Created: true, Workload: &workloadpb.Workload{
		Id: "web-000000000001", Service: r.GetService(), Namespace: r.GetNamespace(), Address: r.GetAddress(), Ttl: ttl,
		Health: workloadpb.Health_HEALTHY, LastHeartbeat: timestamppb.Now(),
	}}, nil
}

func (f *fake) Heartbeat(_ context.Context, r *workloadpb.HeartbeatRequest) (*workloadpb.HeartbeatResponse, error) {
	f.mu.Lock()
	forget := f.forgetFirst
	f.forgetFirst = false
	f.mu.Unlock()
	f.record("heartbeat")
	if forget {
		return nil, status.Error(codes.NotFound, "workload: not registered: "+r.GetId())
	}
	return &workloadpb.HeartbeatResponse{Ttl: durationpb.New(300 * time.Millisecond), ExpiresAt: timestamppb.Now()}, nil
}

func (f *fake) Deregister(_ context.Context, r *workloadpb.DeregisterRequest) (*workloadpb.DeregisterResponse, error) {
	f.record("deregister")
	if r.GetId() != "web-000000000001" {
		return nil, status.Error(codes.NotFound, "workload: not registered: "+r.GetId())
	}
	return &workloadpb.DeregisterResponse{}, nil
}

func (f *fake) List(context.Context, *workloadpb.ListRequest) (*workloadpb.ListResponse, error) {
	return &workloadpb.ListResponse{Workloads: []*workloadpb.Workload{{
		Id: "web-000000000001", Service: "web", Namespace: "shop", Address: "[fd00::5]:8080", PortName: "http", Protocol: "HTTP",
		Locality: "eu-west-1/a", Labels: map[string]string{"version": "v2", "app": "web"}, Health: workloadpb.Health_UNHEALTHY,
		LastHeartbeat: timestamppb.Now(),
	}}}, nil
}

func startFake(t *testing.T, f *fake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if f != nil {
		workloadpb.RegisterWorkloadServiceServer(s, f)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

func TestRegisterKeepalive(t *testing.T) {
	f := &fake{forgetFirst: true}
	addr := startFake(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := run(ctx, "workload", "register", "--server", addr, "--service", "web", "--namespace", "shop",
			"--address", "10.0.0.5:8080", "--locality", "eu-west-1", "--ttl", "300ms", "--keepalive")
		done <- result{code, out, errOut}
	}()
	// The first heartbeat finds the workload forgotten: register again,
	// then keep heartbeating.
	testutil.Eventually(t, 10*time.Second, func() error {
		if c := f.Calls(); !strings.HasPrefix(c, "register heartbeat register heartbeat") {
			return fmt.Errorf("calls so far: %s", c)
		}
		return nil
	})
	cancel() // Ctrl-C
	r := <-done
	if r.code != 0 || r.stdout != "web-000000000001\n" || !strings.Contains(r.stderr, "registered again") || !strings.HasSuffix(r.stderr, "workload web-000000000001 deregistered\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if c := f.Calls(); !strings.HasSuffix(c, "deregister") {
		t.Fatalf("not deregistered on exit: %s", c)
	}
}

func TestOutputs(t *testing.T) {
	addr := startFake(t, &fake{})
	code, out, _ := run(context.Background(), "workload", "list", "--server", addr)
	if code != 0 || !strings.Contains(out, "ID ") || !strings.Contains(out, "web-000000000001  web.shop  [fd00::5]:8080  http/http  eu-west-1/a  unhealthy") ||
		!strings.Contains(out, "app=web,version=v2") {
		t.Fatalf("table: %d\n%s", code, out)
	}
	code, out, _ = run(context.Background(), "workload", "list", "--server", addr, "-o", "yaml")
	if code != 0 || !strings.Contains(out, "- address: '[fd00::5]:8080'") || !strings.Contains(out, "health: UNHEALTHY") {
		t.Fatalf("yaml: %d\n%s", code, out)
	}
	code, _, stderr := run(context.Background(), "workload", "deregister", "--server", addr, "web-nope")
	checkFailure(t, code, stderr, "not registered: web-nope")
	code, _, stderr = run(context.Background(), "workload", "deregister", "--server", addr, "--service", "web", "--namespace", "shop", "--address", "10.9.9.9:1")
	checkFailure(t, code, stderr, "no workload of web.shop at 10.9.9.9:1")
	code, out, _ = run(context.Background(), "workload", "deregister", "--server", addr, "--service", "web", "--namespace", "shop", "--address", "[fd00:0::5]:8080")
	if code != 0 || out != "workload web-000000000001 deregistered\n" {
		t.Fatalf("deregister by address: %d %q", code, out)
	}
	code, out, _ = run(context.Background(), "completion", "bash")
	if code != 0 || !strings.Contains(out, "bash completion") {
		t.Fatalf("completion: %d", code)
	}
	code, out, _ = run(context.Background(), "__complete", "workload", "heartbeat", "--server", addr, "")
	if code != 0 || !strings.Contains(out, "web-000000000001\tweb.shop [fd00::5]:8080") {
		t.Fatalf("ID completion: %d %q", code, out)
	}
}
