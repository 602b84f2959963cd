package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLabBadInput: every lab command given wrong flags, a missing state
// directory, or a lab in the wrong state exits non-zero with one line and
// a hint, and starts nothing.
func TestLabBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")

	// A lab that looks running: its lock is held (here, by this test).
	runningDir := t.TempDir()
	writeState(t, runningDir)
	lock, err := os.OpenFile(filepath.Join(runningDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// A lab whose supervisor died: lab.json, no lock held.
	staleDir := t.TempDir()
	writeState(t, staleDir)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lab", "up", "--clusters", "nope"}, `--clusters "nope": not a lab cluster`},
		{[]string{"lab", "up", "--clusters", "eks-use1,eks-use1"}, `"eks-use1" is given twice`},
		{[]string{"lab", "up", "--clusters", "edge=Not_A_Region"}, `region "Not_A_Region"`},
		{[]string{"lab", "up", "--clusters", ""}, "give at least one cluster"},
		{[]string{"lab", "up", "--rate", "0"}, "--rate 0: want calls per second"},
		{[]string{"lab", "up", "--rate", "fast"}, `invalid argument "fast" for "--rate"`},
		{[]string{"lab", "up", "--netns", "maybe"}, `--netns "maybe": want auto, true or false`},
		{[]string{"lab", "up", "--colour", "red"}, "unknown flag: --colour"},
		{[]string{"lab", "up", "extra"}, `unknown command "extra"`},
		{[]string{"lab", "up", "--state-dir", runningDir}, "a lab is already running"},
		{[]string{"lab", "status", "--state-dir", missing}, "no lab is running"},
		{[]string{"lab", "status", "--state-dir", staleDir}, "died without cleaning up"},
		{[]string{"lab", "status", "--window", "0s"}, "--window 0s: want between 1s and 10m"},
		{[]string{"lab", "status", "-o", "xml"}, `--output "xml"`},
		{[]string{"lab", "down", "--state-dir", missing}, "no lab is running"},
		{[]string{"lab", "cut"}, "accepts 1 arg(s), received 0"},
		{[]string{"lab", "cut", "eks-use1", "--state-dir", missing}, "no lab is running"},
		{[]string{"lab", "cut", "eks-use1", "--state-dir", staleDir}, "died without cleaning up"},
		{[]string{"lab", "cut", "nope", "--state-dir", runningDir}, `no cluster "nope" in this lab`},
		{[]string{"lab", "heal", "eks-use1", "--state-dir", runningDir}, "eks-use1 is not cut"},
		{[]string{"lab", "env", "--state-dir", missing}, "no lab is running"},
		{[]string{"lab", "env", "nope", "--state-dir", runningDir}, `no cluster "nope"`},
		{[]string{"lab", "call"}, "accepts between 1 and 2 arg(s), received 0"},
		{[]string{"lab", "call", "eks-use1", "--state-dir", missing}, "no lab is running"},
		{[]string{"lab", "call", "nope", "--state-dir", runningDir}, `no cluster "nope"`},
		{[]string{"lab", "call", "eks-use1", "--state-dir", runningDir}, "has no ingress gateway"},
		{[]string{"lab", "frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(context.Background(), tc.args...)
			checkFailure(t, code, stderr, tc.want)
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("a failed command created %s", missing)
	}

	// lab down cleans up after the dead lab, and says so.
	code, stdout, stderr := run(context.Background(), "lab", "down", "--state-dir", staleDir)
	if code != 0 || !strings.Contains(stdout, "Cleaned up a lab that was not running cleanly") {
		t.Errorf("lab down of a dead lab: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(staleDir); err == nil {
		t.Errorf("lab down left %s", staleDir)
	}
}

// writeState writes a minimal lab.json: one loopback cluster.
func writeState(t *testing.T, dir string) {
	t.Helper()
	state := `{"stateDir": "` + dir + `", "supervisor": 1, "network": {"mode": "loopback", "prefix": "clitest", "subnet": "127.79"},
  "clusters": [{"name": "eks-use1", "region": "us-east-1", "zones": ["a", "b"], "ip": "127.79.1.1", "grpc": "127.79.1.1:15010",
  "admin": "http://127.79.1.1:15014", "gossip": "127.79.1.1:7946", "federation": "127.79.1.1:7947", "dataDir": "` + dir + `/clusters/eks-use1",
  "users": "127.79.1.2:15080", "instances": []}]}`
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
}
