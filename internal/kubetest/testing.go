package kubetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Start returns a kube-apiserver for one test, stopped when the test ends.
// Use it when a test restarts or halts the server; tests that only read and
// write objects share one server per package with Shared.
func Start(t testing.TB) *APIServer {
	t.Helper()
	skipIfAsked(t)
	s, err := New(t.Context(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of %s:\n%s", s.LogPath(), s.LogTail(40))
		}
		s.Stop()
	})
	return s
}

var shared struct {
	mu  sync.Mutex
	s   *APIServer
	dir string
	err error
}

// Shared returns the package's shared kube-apiserver, started on first use
// and stopped by Main, which the package's TestMain must call. Tests that
// share it isolate themselves by namespace and object names.
func Shared(t testing.TB) *APIServer {
	t.Helper()
	skipIfAsked(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.s == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "kubetest-")
		if shared.err == nil {
			// Not the test's context: the server outlives this test.
			shared.s, shared.err = New(context.Background(), Options{Dir: shared.dir})
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	s := shared.s
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of %s:\n%s", s.LogPath(), s.LogTail(40))
		}
	})
	return s
}

// Main runs the package's tests, then stops the shared server and removes
// its files (kept, and named, when a test failed). Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if shared.s != nil {
		shared.s.Stop()
	}
	if shared.dir != "" {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "kubetest: shared kube-apiserver files kept in %s\n", shared.dir)
		} else {
			os.RemoveAll(shared.dir)
		}
	}
	shared.mu.Unlock()
	os.Exit(code)
}

func skipIfAsked(t testing.TB) {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skip(SkipEnv + "=1: skipping a test that needs a real kube-apiserver")
	}
}
