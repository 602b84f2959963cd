package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/member"
)

// Config says where and how a proxy enrolls.
type Config struct {
	// CAURL is meridiand's CA service, "https://meridiand:15012".
	CAURL string
	// TokenFile holds the join token; read once, for the first SVID.
	TokenFile string
	// Roots are the mesh's root certificates: they verify the CA service
	// and meridiand's xDS server until the first answer brings the bundle.
	// Their URI SAN names the trust domain.
	Roots []*x509.Certificate
	// ServerID, when set, is the only SPIFFE ID the xDS server may have;
	// otherwise any control plane of the trust domain
	// (spiffe://TD/meridian/cluster/NAME) is accepted.
	ServerID string
	// TTL asks for the SVIDs' lifetime; 0 is the CA's default (1h).
	TTL    time.Duration
	Logger *slog.Logger
}

// Identity is a proxy's own SVID and the bundle that came with it. It is
// an x509svid.Source and an x509bundle.Source; safe for concurrent use.
type Identity struct {
	cfg      Config
	td       spiffeid.TrustDomain
	serverID spiffeid.ID
	log      *slog.Logger

	mu     sync.RWMutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	// got is when svid arrived: its half life counts from then, as the
	// CA backdates NotBefore for clock skew.
	got time.Time
}

// New checks the configuration; it does no I/O.
func New(cfg Config) (*Identity, error) {
	u, err := url.Parse(cfg.CAURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("enroll: CA URL %q: want https://HOST:PORT", cfg.CAURL)
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("enroll: a join token file is required")
	}
	if len(cfg.Roots) == 0 {
		return nil, errors.New("enroll: the mesh's root certificates are required")
	}
	var td spiffeid.TrustDomain
	for _, r := range cfg.Roots {
		for _, u := range r.URIs {
			if id, err := spiffeid.FromURI(u); err == nil {
				td = id.TrustDomain()
			}
		}
	}
	if td.IsZero() {
		return nil, errors.New("enroll: the root certificates name no SPIFFE trust domain (URI SAN spiffe://TD)")
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("enroll: SVID TTL %s is negative", cfg.TTL)
	}
	i := &Identity{cfg: cfg, td: td, bundle: x509bundle.FromX509Authorities(td, cfg.Roots)}
	if cfg.ServerID != "" {
		if i.serverID, err = spiffeid.FromString(cfg.ServerID); err != nil {
			return nil, fmt.Errorf("enroll: server ID: %w", err)
		}
		if !i.serverID.MemberOf(td) {
			return nil, fmt.Errorf("enroll: server ID %s is not in trust domain %s", i.serverID, td)
		}
	}
	i.log = cfg.Logger
	if i.log == nil {
		i.log = slog.Default()
	}
	i.log = i.log.With("component", "enroll", "ca", cfg.CAURL)
	return i, nil
}

// ParseRoots reads PEM root certificates.
func ParseRoots(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("enroll: root certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("enroll: no PEM certificate")
	}
	return out, nil
}

// TrustDomain returns the mesh's trust domain.
func (i *Identity) TrustDomain() spiffeid.TrustDomain { return i.td }

// GetX509SVID implements x509svid.Source.
func (i *Identity) GetX509SVID() (*x509svid.SVID, error) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if i.svid == nil {
		return nil, errors.New("enroll: no SVID yet")
	}
	return i.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source: the mesh's
// bundle only.
func (i *Identity) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != i.td {
		return nil, fmt.Errorf("enroll: no bundle for trust domain %s", td)
	}
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.bundle, nil
}

// XDSTLS is the TLS of the xDS connection: the SVID as client
// certificate (meridiand attests the proxy by it), meridiand verified by
// the bundle as the configured server ID or any control plane of the mesh.
func (i *Identity) XDSTLS() *tls.Config {
	authorize := member.Authorizer(i.td)
	if !i.serverID.IsZero() {
		authorize = tlsconfig.AuthorizeID(i.serverID)
	}
	return tlsconfig.MTLSClientConfig(i, i, authorize)
}

// Enroll gets the first SVID with the join token. Failures to reach the
// CA service are retried with backoff until ctx ends; a refusal (a spent,
// expired or unknown token) is returned at once.
func (i *Identity) Enroll(ctx context.Context) error {
	b, err := os.ReadFile(i.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("enroll: join token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return fmt.Errorf("enroll: join token file %s is empty", i.cfg.TokenFile)
	}
	return i.retry(ctx, token, time.Time{})
}

// Run renews the SVID at half its life until ctx ends, presenting the
// current SVID instead of a token. Renewal failures are retried and
// logged; Run returns when ctx ends.
func (i *Identity) Run(ctx context.Context) error {
	for {
		i.mu.RLock()
		s, got := i.svid, i.got
		i.mu.RUnlock()
		if s == nil {
			return errors.New("enroll: Run before Enroll")
		}
		leaf := s.Certificates[0]
		due := got.Add(max(leaf.NotAfter.Sub(got)/2, minRenewal))
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := i.retry(ctx, "", leaf.NotAfter); err != nil && ctx.Err() == nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// minRenewal keeps a very short-lived SVID from being renewed in a loop.
const minRenewal = time.Second

// errRefused marks an answer that retrying cannot change.
var errRefused = errors.New("refused")

// retry fetches until it succeeds, is refused, or ctx ends. A renewal
// (expires set) keeps trying past refusals while its SVID is valid: the
// control plane may be mid-restart or mid-rotation.
func (i *Identity) retry(ctx context.Context, token string, expires time.Time) error {
	wait := 250 * time.Millisecond
	for {
		err := i.fetch(ctx, token)
		if err == nil {
			return nil
		}
		if errors.Is(err, errRefused) && expires.IsZero() {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		i.log.Warn("enroll: asking the CA service for an SVID", "err", err, "retry_in", wait, "first", expires.IsZero())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// svidRequest and svidResponse are trust/casvc's SVIDRequest and
// SVIDResponse on the wire.
type svidRequest struct {
	CSR        []byte `json:"csr"`
	Token      string `json:"token"`
	TTLSeconds int64  `json:"ttlSeconds,omitempty"`
}

type svidResponse struct {
	SPIFFEID string          `json:"spiffeId"`
	Chain    string          `json:"chain"`
	Bundle   json.RawMessage `json:"bundle"`
	Error    string          `json:"error"`
	Reason   string          `json:"reason"`
}

const pathSVID = "/trust/v1/svid"

// fetch makes one request: a fresh key and CSR, the token (or the current
// SVID on the TLS connection), and installs what comes back once it
// verifies against the bundle it came with.
func (i *Identity) fetch(ctx context.Context, token string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("enroll: key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("enroll: CSR: %w", err)
	}
	body, _ := json.Marshal(svidRequest{CSR: csr, Token: token, TTLSeconds: int64(i.cfg.TTL / time.Second)})
	tlsCfg := tlsconfig.TLSClientConfig(i, member.Authorizer(i.td))
	tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		s, err := i.GetX509SVID()
		if err != nil || token != "" {
			return &tls.Certificate{}, nil // the first request carries the token
		}
		return certificate(s), nil
	}
	// A client per request: the certificate a connection was made with
	// must not outlive the SVID, and requests are rare.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(i.cfg.CAURL, "/")+pathSVID, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("enroll: reading the answer: %w", err)
	}
	var out svidResponse
	jerr := json.Unmarshal(data, &out)
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest {
			return fmt.Errorf("enroll: the CA service %w the request (%s): %s %s", errRefused, resp.Status, out.Reason, out.Error)
		}
		return fmt.Errorf("enroll: the CA service answered %s: %s", resp.Status, out.Error)
	}
	if jerr != nil {
		return fmt.Errorf("enroll: answer: %w", jerr)
	}
	return i.install(out, key)
}

func (i *Identity) install(out svidResponse, key *ecdsa.PrivateKey) error {
	sb, err := spiffebundle.Parse(i.td, out.Bundle)
	if err != nil {
		return fmt.Errorf("enroll: answer bundle: %w", err)
	}
	bundle := x509bundle.FromX509Authorities(i.td, sb.X509Authorities())
	var chain []*x509.Certificate
	rest := []byte(out.Chain)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("enroll: answer chain: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return errors.New("enroll: answer chain: no certificate")
	}
	id, _, err := x509svid.Verify(chain, bundle)
	if err != nil {
		return fmt.Errorf("enroll: answer chain: %w", err)
	}
	if pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("enroll: answer chain: the certificate is not for the key asked for")
	}
	s := &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}
	i.mu.Lock()
	i.svid, i.bundle, i.got = s, bundle, time.Now()
	i.mu.Unlock()
	i.log.Info("enroll: SVID installed", "spiffe_id", id.String(), "expires", chain[0].NotAfter)
	return nil
}

func certificate(s *x509svid.SVID) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, x := range s.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}
