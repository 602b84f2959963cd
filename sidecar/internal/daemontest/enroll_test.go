package daemontest

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/proxytest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/enroll"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// TestEnrollWithJoinToken: outside Kubernetes, two meridian-proxies
// started from their flags each spend a join token minted with meridianctl
// on an SVID from a real meridiand's CA service, connect to its xDS server
// over TLS with it, are attested by it and get their workload SVIDs and
// the bundle over SDS — so that a request from one to the other crosses
// STRICT mTLS — and renew their SVIDs at half life. A spent token is
// refused.
// They use meridiand's TLS xDS port (daemon/xdstls.go).
func TestEnrollWithJoinToken(t *testing.T) {
	t.Setenv(ca.EnvKey, base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	caDir := filepath.Join(t.TempDir(), "ca")
	ctl(t, "trust", "init", "--trust-domain", "mesh.test", "--dir", caDir)
	d := startMeridiand(t, func(c *daemon.Config) {
		c.Trust = daemon.Trust{Enabled: true, TrustDomain: "mesh.test", RootDir: caDir, CAAddr: "127.0.0.1:0"}
	})
	srv := d.GRPCAddr()
	pemDir := t.TempDir()
	ctl(t, "trust", "bundle", "--server", srv, "--pem-dir", pemDir)
	roots := filepath.Join(pemDir, "mesh.test.pem")

	xdsTLS := d.XDSTLSAddr()
	caURL := "https://" + d.Trust.CAAddr()

	appAddr := proxytest.App(t, "v1")
	_, appPort, _ := net.SplitHostPort(appAddr)
	inbound := testutil.FreeAddr(t).String()
	ctl(t, "workload", "register", "--server", srv, "--service", "web", "--namespace", "shop", "--service-account", "web",
		"--address", inbound, "--locality", "onprem-east/rack1", "--protocol", "http", "--ttl", "1h")
	proxy := func(sa string, args ...string) *sidecar.Proxy {
		return proxytest.Start(t, cptest.Logger(t), append([]string{"--xds-address", xdsTLS, "--xds-tls", "--ca-url", caURL, "--root-cert", roots,
			"--join-token-file", proxytest.JoinToken(t, srv, "shop", sa), "--id", sa + ".shop", "--cluster", "onprem-dc1", "--namespace", "shop",
			"--service-account", sa, "--locality", "onprem-east/rack1",
			"--admin-address=", "--metrics-address=", "--health-address=", "--access-log", "off"}, args...)...)
	}
	server := proxy("web", "--inbound", inbound+"="+appPort+"/http")
	up := testutil.FreeAddr(t).String()
	client := proxy("client", "--svid-ttl", "6s", "--upstream", fmt.Sprintf("%s=web.shop.svc.cluster.local:%d", up, registeredOnePort(t, d)))

	for p, want := range map[*sidecar.Proxy]string{server: "spiffe://mesh.test/ns/shop/sa/web", client: "spiffe://mesh.test/ns/shop/sa/client"} {
		s, err := p.Identity().GetX509SVID()
		if err != nil || s.ID.String() != want {
			t.Fatalf("enrolled SVID %v (%v), want %s", s, err, want)
		}
		testutil.Eventually(t, 20*time.Second, func() error {
			if got := proxytest.SDSIdentity(p); got != want {
				return fmt.Errorf("SVID over SDS: %q, want %s", got, want)
			}
			return nil
		})
	}

	// Through the client's upstream port, over mTLS to the server's
	// inbound port; the inbound port itself refuses plaintext.
	answer := func(url string) error { return proxytest.Get(url, "v1") }
	testutil.Eventually(t, 20*time.Second, func() error { return answer("http://" + up + "/") })
	if err := answer("http://" + inbound + "/"); err == nil {
		t.Fatal("the server's inbound port answered plaintext: not STRICT mTLS")
	}

	// Renewal at half life (6s asked), with the SVID instead of the token.
	first, _ := client.Identity().GetX509SVID()
	testutil.Eventually(t, 20*time.Second, func() error {
		if s, _ := client.Identity().GetX509SVID(); s.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 {
			return errors.New("not renewed yet")
		}
		return nil
	})
	if s, _ := client.Identity().GetX509SVID(); s.ID != first.ID {
		t.Fatalf("renewed as %s, was %s", s.ID, first.ID)
	}
	// A new xDS connection presents the renewed SVID.
	conn, err := tls.Dial("tcp", xdsTLS, client.Identity().XDSTLS())
	if err != nil {
		t.Fatalf("xDS TLS with the renewed SVID: %v", err)
	}
	conn.Close()
	if err := answer("http://" + up + "/"); err != nil {
		t.Fatalf("after renewal: %v", err)
	}

	// A spent token is refused, at once.
	tok := proxytest.JoinToken(t, srv, "shop", "again")
	rootPEM, _ := os.ReadFile(roots)
	rs, err := enroll.ParseRoots(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		id, err := enroll.New(enroll.Config{CAURL: caURL, TokenFile: tok, Roots: rs})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = id.Enroll(ctx)
		cancel()
		if i == 0 && err != nil {
			t.Fatalf("first use of a token: %v", err)
		}
		if i == 1 && (err == nil || !strings.Contains(err.Error(), "refused")) {
			t.Fatalf("second use of a token: %v, want refused", err)
		}
	}
}

func registeredOnePort(t *testing.T, d *daemon.Daemon) uint32 {
	var port uint32
	testutil.Eventually(t, 10*time.Second, func() error {
		if s, ok := d.Registry.View().Service(registry.ServiceKey{Namespace: "shop", Name: "web"}); ok && len(s.Ports) == 1 {
			port = s.Ports[0].Port
			return nil
		}
		return errors.New("web.shop not in the registry")
	})
	return port
}
