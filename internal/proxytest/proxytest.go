// Package proxytest runs meridian-proxy inside a test's process, started
// from its command line as an operator would start it, against a real
// meridiand: a join token minted with meridianctl, the proxy from its
// flags, the identity it was sent over SDS, and a backend that tells a
// request that came through a proxy's route from one that did not.
//
// The package is for tests only and must not be imported by production
// code. It lives outside sidecar/ so that tests of the control plane
// (daemon) can drive proxies too.
package proxytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Start runs meridian-proxy from its command line (the flags of
// cmd/meridian-proxy) until the test ends, logging to log, and waits
// until it has applied its first configuration.
func Start(t testing.TB, log *slog.Logger, args ...string) *sidecar.Proxy {
	t.Helper()
	var o sidecar.Options
	fs := pflag.NewFlagSet("meridian-proxy", pflag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, closer, err := o.Config(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger, cfg.Metrics = log, prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sidecar.New(ctx, cfg)
	if err != nil {
		cancel()
		closer.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("meridian-proxy: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); closer.Close() })
	select {
	case <-p.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("meridian-proxy never got its configuration: %+v", p.Client().Status())
	}
	return p
}

// JoinToken mints a workload join token with `meridianctl trust
// join-token` from the meridiand at server, and writes it to a file for
// --join-token-file.
func JoinToken(t testing.TB, server, namespace, serviceAccount string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args := []string{"trust", "join-token", "--namespace", namespace, "--service-account", serviceAccount, "--ttl", "10m", "--server", server}
	if code := cli.Execute(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("meridianctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	for line := range strings.SplitSeq(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "token" {
			file := filepath.Join(t.TempDir(), serviceAccount+".token")
			if err := os.WriteFile(file, []byte(f[1]+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return file
		}
	}
	t.Fatalf("no token in meridianctl's answer:\n%s", out.String())
	return ""
}

// SDSIdentity is the SPIFFE ID of the SVID the proxy was sent over SDS,
// "" before it got one.
func SDSIdentity(p *sidecar.Proxy) string {
	var id string
	p.Client().State().Each(xdsclient.SecretType, func(_ string, r xdsclient.Resource) {
		if s := r.(*xdsconfig.Secret); s.SVID != nil {
			id = s.SVID.ID.String()
		}
	})
	return id
}

// App serves HTTP on loopback until the test ends, answering with version
// in X-Backend — and with 421 to a request that did not come through a
// route of a proxy (those carry the X-Request-Id it adds), so that a
// connection passed through to its original destination is told apart.
func App(t testing.TB, version string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", version)
		if r.Header.Get("X-Request-Id") == "" {
			w.WriteHeader(http.StatusMisdirectedRequest)
		}
		fmt.Fprintf(w, "%s %s", version, r.URL.Path)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Get makes one request without connection reuse and returns an error
// unless an App of that version answered it with 200: a request that a
// proxy routed (App answers others with 421), or one that a STRICT inbound
// port must refuse.
func Get(url, version string) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != version {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return nil
}
