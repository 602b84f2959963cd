package sidecar_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
)

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on a thread moved into the named network namespace:
// sockets fn creates belong to it, whichever goroutine uses them after.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread is left locked: it dies with the goroutine instead
		// of going back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		fn()
	}()
	<-done
}

// TestTransparentCapture runs the meridian-proxy binary as a pod would: in
// its own network namespace, as user 1337, behind the iptables rules the
// injector's init container installs (inject.IPTablesRules). The
// application's outbound connection to a service endpoint is captured on
// 15001, its original destination recovered with SO_ORIGINAL_DST and
// routed by the xDS the proxy got from xds/server; an inbound connection
// to the application's port is captured on 15006 and reaches the
// application from the proxy on loopback.
func TestTransparentCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace and iptables (run the tests as root to include it)")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Fatal("iptables-restore is missing: make test installs it (make test-deps, or scripts/apt.sh iptables)")
	}
	n := rand.IntN(200) + 20
	ns := fmt.Sprintf("mp-capture-%d", n)
	hostIf, nsIf := fmt.Sprintf("mph%d", n), fmt.Sprintf("mpn%d", n)
	hostIP, podIP := fmt.Sprintf("10.201.%d.1", n), fmt.Sprintf("10.201.%d.2", n)
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	sh(t, "ip", "link", "set", nsIf, "netns", ns)
	sh(t, "ip", "addr", "add", hostIP+"/24", "dev", hostIf)
	sh(t, "ip", "link", "set", hostIf, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "addr", "add", podIP+"/24", "dev", nsIf)
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	restore := exec.Command("ip", "netns", "exec", ns, "iptables-restore", "--noflush")
	restore.Stdin = strings.NewReader(inject.IPTablesRules(nil, nil))
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore: %v: %s", err, out)
	}

	// The backend, outside the pod, and the application, inside it.
	backendLn, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	backendPort := backendLn.Addr().(*net.TCPAddr).Port
	sawPeer := make(chan string, 16)
	go http.Serve(backendLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawPeer <- r.Header.Get("X-Meridian-Peer")
		io.WriteString(w, "backend")
	}))
	t.Cleanup(func() { backendLn.Close() })
	var appLn net.Listener
	inNetns(t, ns, func() { appLn, err = net.Listen("tcp", "0.0.0.0:8080") })
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(appLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app sees %s", r.RemoteAddr)
	}))
	t.Cleanup(func() { appLn.Close() })

	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	m := &mesh{t: t, reg: reg}
	m.xds = cptest.StartMeridian(t, reg, "c1", hostIP+":0")
	m.service("backend", uint32(backendPort), "HTTP")
	m.endpoint("backend", "b1", netip.MustParseAddrPort(backendLn.Addr().String()), "z1", nil)
	// The service port differs from the workload's port, as a Kubernetes
	// Service's port and targetPort usually do. (With equal ports, the
	// virtualInbound listener's use_original_dst, as translated, would
	// hand inbound connections to the outbound listener of that port — in
	// Envoy as here.)
	m.service("app", 80, "HTTP")
	m.endpoint("app", "a1", netip.MustParseAddrPort(podIP+":8080"), "z1", nil)

	bin := filepath.Join(t.TempDir(), "meridian-proxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/meridian-mesh/meridian/cmd/meridian-proxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	proxyCmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", bin,
		"--xds-address="+m.xds.Addr, "--cluster=c1", "--namespace=shop", "--id=capture", "--locality=r1/z1", "--inbound-ports=8080",
		"--service-account=app", "--admin-address=", "--metrics-address="+podIP+":15090", "--health-address="+podIP+":15021",
		"--log-format=text", "--access-log=off")
	var logs bytes.Buffer
	proxyCmd.Stdout, proxyCmd.Stderr = &logs, &logs
	if err := proxyCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		proxyCmd.Wait()
		if t.Failed() {
			t.Logf("meridian-proxy:\n%s", logs.String())
		}
	})
	testutil.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + podIP + ":15021/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})

	// Outbound: the application dials the backend's address; iptables
	// send it to the proxy, which routes it by Host and adds its peer
	// labels on the way.
	testutil.Eventually(t, 10*time.Second, func() error {
		var conn net.Conn
		var derr error
		inNetns(t, ns, func() { conn, derr = net.DialTimeout("tcp", backendLn.Addr().String(), 2*time.Second) })
		if derr != nil {
			return derr
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: backend.shop.svc.cluster.local:%d\r\nConnection: close\r\n\r\n", backendPort)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "backend" {
			return fmt.Errorf("outbound: %s %q", resp.Status, body)
		}
		select {
		case peer := <-sawPeer:
			if !strings.Contains(peer, "workload=app") {
				return fmt.Errorf("the backend saw no sidecar (peer header %q): not captured", peer)
			}
		default:
			return fmt.Errorf("the backend saw nothing")
		}
		return nil
	})

	// Inbound: the host dials the application's port; the proxy takes it
	// on 15006 and connects to the application on loopback.
	testutil.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + podIP + ":8080/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "app sees 127.0.0.1:") {
			return fmt.Errorf("inbound: %q, want the application to see the proxy on loopback", body)
		}
		return nil
	})
}
