package daemon_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/proxytest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/service"
)

// healthOver checks the gRPC health of the server at addr with the given
// transport credentials.
func healthOver(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// rogueSVID is an SVID of the mesh's trust domain, for the ID of a real
// workload, from a root the mesh does not trust.
func rogueSVID(t *testing.T, td spiffeid.TrustDomain, id string) tls.Certificate {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rogue")
	if _, err := service.InitRootDir(dir, ca.RootOptions{TrustDomain: td}, nil, nil); err != nil {
		t.Fatal(err)
	}
	caDir, err := service.IssueIntermediateDir(dir, "rogue", 0)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(filepath.Join(caDir, service.CACertFile))
	keyPEM, _ := os.ReadFile(filepath.Join(caDir, service.CAKeyFile))
	chain, err := ca.ParseCertificates(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "rogue", Chain: chain, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Mint(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: s.PrivateKey}
	for _, c := range s.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// TestXDSOverTLS: outside Kubernetes, two meridian-proxies started from
// their flags enroll with join tokens minted by meridianctl, connect to
// meridiand's TLS xDS port (--xds-tls, roots from meridianctl trust bundle
// --pem-dir), are attested by their SVIDs, get their workload SVIDs over
// SDS and talk over STRICT mTLS. The port presents the member SVID as it
// is at each handshake (a rotation shows at once), admits a client
// without a certificate (Kubernetes pods attest with tokens), and refuses
// a client whose certificate comes from another root and a plaintext
// client — counted and logged — while meridiand keeps serving.
func TestXDSOverTLS(t *testing.T) {
	m := newTrustMesh(t)
	r := startDaemon(t, t.TempDir(), func(c *daemon.Config) {
		c.Trust = daemon.Trust{Enabled: true, TrustDomain: m.trustDomain, RootDir: m.caDir, CAAddr: "127.0.0.1:0"}
	})
	d := r.d
	srv, xdsTLS := d.GRPCAddr(), d.XDSTLSAddr()
	if xdsTLS == "" {
		t.Fatal("no TLS xDS port with trust on")
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, "http://"+d.AdminAddr()+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	pemDir := t.TempDir()
	if code, out, errOut := ctl("trust", "bundle", "--server", srv, "--pem-dir", pemDir); code != 0 {
		t.Fatalf("trust bundle: %s%s", out, errOut)
	}
	roots := filepath.Join(pemDir, m.trustDomain+".pem")
	td := spiffeid.RequireTrustDomainFromString(m.trustDomain)
	bundle, err := x509bundle.Load(td, roots)
	if err != nil {
		t.Fatal(err)
	}

	_, appPort, _ := net.SplitHostPort(proxytest.App(t, "v1"))
	inbound := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	_, inboundPort, _ := net.SplitHostPort(inbound)
	if code, out, errOut := ctl("workload", "register", "--server", srv, "--service", "web", "--namespace", "shop", "--service-account", "web",
		"--address", inbound, "--locality", "onprem-east/rack1", "--protocol", "http", "--ttl", "1h"); code != 0 {
		t.Fatalf("workload register: %s%s", out, errOut)
	}
	log := slog.New(slog.NewTextHandler(testLog(t), nil))
	proxy := func(sa string, args ...string) *sidecar.Proxy {
		return proxytest.Start(t, log, append([]string{"--xds-address", xdsTLS, "--xds-tls", "--ca-url", "https://" + d.Trust.CAAddr(),
			"--root-cert", roots, "--join-token-file", proxytest.JoinToken(t, srv, "shop", sa),
			"--id", sa + ".shop", "--cluster", "onprem-dc1", "--namespace", "shop", "--service-account", sa, "--locality", "onprem-east/rack1",
			"--admin-address=", "--metrics-address=", "--health-address=", "--access-log", "off"}, args...)...)
	}
	server := proxy("web", "--inbound", inbound+"="+appPort+"/http")
	up := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	client := proxy("client", "--upstream", up+"=web.shop.svc.cluster.local:"+inboundPort)
	for p, want := range map[*sidecar.Proxy]string{server: "spiffe://mesh.test/ns/shop/sa/web", client: "spiffe://mesh.test/ns/shop/sa/client"} {
		testutil.Eventually(t, 20*time.Second, func() error {
			if got := proxytest.SDSIdentity(p); got != want {
				return fmt.Errorf("SVID over SDS: %q, want %s", got, want)
			}
			return nil
		})
	}
	answer := func(url string) error { return proxytest.Get(url, "v1") }
	testutil.Eventually(t, 20*time.Second, func() error { return answer("http://" + up + "/") })
	if err := answer("http://" + inbound + "/"); err == nil {
		t.Fatal("the server's inbound port answered plaintext: not STRICT mTLS")
	}

	// The member SVID, as it is at each handshake.
	serverCert := func() *tls.ConnectionState {
		cfg := tlsconfig.TLSClientConfig(bundle, member.Authorizer(td))
		cfg.NextProtos = []string{"h2"} // as gRPC asks: the server refuses a client without
		conn, err := tls.Dial("tcp", xdsTLS, cfg)
		if err != nil {
			t.Fatalf("TLS to the xDS port as a member of the mesh: %v", err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st
	}
	current := func() string {
		s, err := d.Trust.SVIDs.Get(d.Trust.MemberID())
		if err != nil {
			t.Fatal(err)
		}
		return s.Certificates[0].SerialNumber.String()
	}
	if got, want := serverCert().PeerCertificates[0].SerialNumber.String(), current(); got != want {
		t.Fatalf("the xDS port presents serial %s, the member SVID is %s", got, want)
	}
	before := current()
	if err := d.Trust.SVIDs.RotateAll(); err != nil {
		t.Fatal(err)
	}
	if got := serverCert().PeerCertificates[0].SerialNumber.String(); got == before || got != current() {
		t.Fatalf("after rotation the xDS port presents serial %s (was %s, member SVID %s)", got, before, current())
	}

	// Server-side TLS without a client certificate is admitted.
	const handshakes = "meridian_xds_tls_handshakes_total"
	if err := healthOver(xdsTLS, credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, member.Authorizer(td)))); err != nil {
		t.Fatalf("health over TLS without a client certificate: %v", err)
	}

	// A client certificate from another root, for a real workload's ID.
	rogue := tlsconfig.TLSClientConfig(bundle, member.Authorizer(td))
	rogue.Certificates = []tls.Certificate{rogueSVID(t, td, "spiffe://mesh.test/ns/shop/sa/web")}
	if err := healthOver(xdsTLS, credentials.NewTLS(rogue)); err == nil {
		t.Fatal("a client certificate from another root was admitted")
	}
	// A plaintext client.
	if err := healthOver(xdsTLS, insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client was admitted on the TLS port")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, result := range []string{"bad_certificate", "not_tls"} {
			if counter(t, d.Metrics, handshakes, "result", result) < 1 {
				return fmt.Errorf("no %s handshake counted", result)
			}
		}
		return nil
	})

	// meridiand keeps serving: the TLS port, its proxies, and a proxy
	// that connects afresh.
	ok := counter(t, d.Metrics, handshakes, "result", "ok")
	if err := healthOver(xdsTLS, credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, member.Authorizer(td)))); err != nil {
		t.Fatalf("health over TLS after refusals: %v", err)
	}
	if n := counter(t, d.Metrics, handshakes, "result", "ok"); n <= ok {
		t.Fatalf("ok handshakes %v, were %v", n, ok)
	}
	if err := answer("http://" + up + "/"); err != nil {
		t.Fatalf("through the proxies after refusals: %v", err)
	}
	late := proxy("late")
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := proxytest.SDSIdentity(late); got != "spiffe://mesh.test/ns/shop/sa/late" {
			return errors.New("the late proxy has no SVID over SDS yet")
		}
		return nil
	})

	// A second meridiand asking for the same TLS port is told which
	// setting to change.
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "c2", Region: "r"}
	cfg.DataDir, cfg.GRPCAddr, cfg.AdminAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Trust = daemon.Trust{Enabled: true, TrustDomain: m.trustDomain, RootDir: m.caDir, CAAddr: "127.0.0.1:0"}
	cfg.XDS.TLSAddr = xdsTLS
	if _, err := daemon.New(context.Background(), cfg, daemon.WithLogger(slog.New(slog.DiscardHandler))); err == nil || !strings.Contains(err.Error(), "xds.tlsAddr (--xds-tls-addr") {
		t.Fatalf("TLS xDS port in use: %v", err)
	}
}

// The xds section takes the xDS server's settings and the TLS port side
// by side; the TLS port needs trust.
func TestXDSConfig(t *testing.T) {
	cfg, err := daemon.ConfigFromArgs([]string{"--config", writeFile(t, `
cluster: {name: c, region: r}
trust: {enabled: true}
xds: {outboundTrafficPolicy: REGISTRY_ONLY, tlsAddr: "127.0.0.1:16011"}
`)})
	if err != nil || cfg.XDS.OutboundTrafficPolicy != "REGISTRY_ONLY" || cfg.XDS.TLSAddr != "127.0.0.1:16011" {
		t.Fatalf("%+v %v", cfg.XDS, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--xds-tls-addr", ":15011"}, "xds.tlsAddr (--xds-tls-addr): Forbidden"},
		{[]string{"--trust", "--xds-tls-addr", "15011"}, "xds.tlsAddr (--xds-tls-addr): Invalid value"},
		{[]string{"--trust", "--xds-tls-addr", ":15010"}, "xds.tlsAddr (--xds-tls-addr): Duplicate value"},
	} {
		_, err := daemon.ConfigFromArgs(append([]string{"--cluster", "c", "--region", "r"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// tokenOverTLS: a pod's meridian-proxy, as injected but pointed at the
// TLS xDS port — meridiand verified by its member SPIFFE ID against the
// mesh roots, no client certificate — attests with its projected
// service-account token and gets its SVID over SDS.
func tokenOverTLS(t *testing.T, kc kubernetes.Interface, d *daemon.Daemon) {
	t.Helper()
	ctx := context.Background()
	if _, err := kc.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "client"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kc.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "client",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{attest.DefaultAudience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	pemDir := t.TempDir()
	if code, out, errOut := ctl("trust", "bundle", "--server", d.GRPCAddr(), "--pem-dir", pemDir); code != 0 {
		t.Fatalf("trust bundle: %s%s", out, errOut)
	}
	before := counter(t, d.Metrics, "meridian_xds_tls_handshakes_total", "result", "ok")
	p := proxytest.Start(t, slog.New(slog.NewTextHandler(testLog(t), nil)), "--xds-address", d.XDSTLSAddr(),
		"--xds-ca", filepath.Join(pemDir, d.Trust.MemberID().TrustDomain().Name()+".pem"), "--xds-server-id", d.Trust.MemberID().String(),
		"--xds-token-file", token, "--id", "client-0.shop", "--cluster", "onprem-dc1", "--namespace", "shop", "--service-account", "client",
		"--admin-address=", "--metrics-address=", "--health-address=", "--access-log", "off")
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := proxytest.SDSIdentity(p); got != "spiffe://mesh.test/ns/shop/sa/client" {
			return fmt.Errorf("SVID over SDS: %q", got)
		}
		return nil
	})
	if n := counter(t, d.Metrics, "meridian_xds_tls_handshakes_total", "result", "ok"); n <= before {
		t.Fatalf("the proxy's xDS did not come through the TLS port: %v ok handshakes, were %v", n, before)
	}
}
