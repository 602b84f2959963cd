package promtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
)

// Server is a running Prometheus.
type Server struct {
	// URL is its HTTP API's base, http://127.0.0.1:PORT.
	URL string
}

// Start runs Prometheus scraping targets (host:port, path /metrics) until
// the test ends.
func Start(t testing.TB, targets ...string) *Server {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// dpkg takes one installer at a time; test packages run in parallel.
	install := exec.Command("flock", filepath.Join(os.TempDir(), "meridian-apt.lock"), "bash", filepath.Join(root, "scripts", "apt.sh"), "prometheus")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("promtest: scripts/apt.sh prometheus: %v\n%s", err, out)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	cfg := fmt.Sprintf("global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [%s]\n", strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t).String()
	var logs bytes.Buffer
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("promtest: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("--- prometheus output:\n%s", logs.String())
		}
	})
	s := &Server{URL: "http://" + addr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if resp, err := http.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("promtest: prometheus exited:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatalf("promtest: prometheus not ready after a minute:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// QueryURL is the instant-query URL for q.
func (s *Server) QueryURL(q string) string {
	return s.URL + "/api/v1/query?query=" + url.QueryEscape(q)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "apt.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("promtest: scripts/apt.sh not found above %s", dir)
		}
		dir = parent
	}
}
