package casvc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/member"
)

// Client calls a CA service.
type Client struct {
	url  string
	http *http.Client
	td   spiffeid.TrustDomain
}

// NewClient returns a client of the CA service at baseURL
// ("https://meridiand:15012") in trust domain td, over tlsConfig (ClientTLS,
// MemberTLS or, for the first contact of a new cluster, PinnedTLS).
func NewClient(baseURL string, td spiffeid.TrustDomain, tlsConfig *tls.Config) *Client {
	return &Client{
		url: strings.TrimSuffix(baseURL, "/"), td: td,
		// No connection reuse: the client certificate a connection was made
		// with (none before the first SVID) must not outlive the SVID, and
		// calls are rare (one per renewal).
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}},
	}
}

// ClientTLS verifies that the server is a control plane of the mesh. It
// presents the current SVID of svid when there is one (renewal without a
// token), and nothing before the first (svid may be nil).
func ClientTLS(bundles x509bundle.Source, td spiffeid.TrustDomain, svid x509svid.Source) *tls.Config {
	c := tlsconfig.TLSClientConfig(bundles, member.Authorizer(td))
	if svid != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			s, err := svid.GetX509SVID()
			if err != nil {
				return &tls.Certificate{}, nil // none yet: the request carries a token
			}
			return tlsCertificate(s), nil
		}
	}
	return c
}

func tlsCertificate(s *x509svid.SVID) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
	for _, x := range s.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// MemberTLS is ClientTLS presenting a member certificate: how a cluster
// asks for its intermediate again after a root rotation.
func MemberTLS(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain) *tls.Config {
	return tlsconfig.MTLSClientConfig(svid, bundles, member.Authorizer(td))
}

// SignSVID sends a CSR with the caller's token and returns the SVID chain
// and the mesh bundle. A refusal comes back as a *trust.RefusedError.
func (c *Client) SignSVID(ctx context.Context, req SVIDRequest) ([]*x509.Certificate, *spiffebundle.Bundle, error) {
	var resp SVIDResponse
	if err := c.call(ctx, http.MethodPost, PathSVID, req, &resp); err != nil {
		return nil, nil, err
	}
	return c.parse(resp.Chain, resp.Bundle)
}

// RequestIntermediate asks the root holder for this cluster's intermediate.
func (c *Client) RequestIntermediate(ctx context.Context, req IntermediateRequest) ([]*x509.Certificate, *spiffebundle.Bundle, error) {
	var resp IntermediateResponse
	if err := c.call(ctx, http.MethodPost, PathIntermediate, req, &resp); err != nil {
		return nil, nil, err
	}
	return c.parse(resp.Chain, resp.Bundle)
}

// Bundle fetches the mesh's trust bundle.
func (c *Client) Bundle(ctx context.Context) (*spiffebundle.Bundle, error) {
	var raw json.RawMessage
	if err := c.call(ctx, http.MethodGet, PathBundle, nil, &raw); err != nil {
		return nil, err
	}
	b, err := spiffebundle.Parse(c.td, raw)
	if err != nil {
		return nil, fmt.Errorf("casvc: bundle: %w", err)
	}
	return b, nil
}

func (c *Client) parse(chainPEM string, bundleJSON json.RawMessage) ([]*x509.Certificate, *spiffebundle.Bundle, error) {
	chain, err := ca.ParseCertificates([]byte(chainPEM))
	if err != nil {
		return nil, nil, fmt.Errorf("casvc: answer chain: %w", err)
	}
	b, err := spiffebundle.Parse(c.td, bundleJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("casvc: answer bundle: %w", err)
	}
	return chain, b, nil
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("casvc: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, body)
	if err != nil {
		return fmt.Errorf("casvc: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("casvc: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("casvc: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		_ = json.Unmarshal(data, &e) // a body that is not ours still gives the status
		if e.Reason != "" {
			return fmt.Errorf("casvc: %s %s: %w", method, path, &trust.RefusedError{Reason: e.Reason, Detail: e.Error})
		}
		return fmt.Errorf("casvc: %s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("casvc: %s %s: answer: %w", method, path, err)
	}
	return nil
}

// FetchPinnedBundle is a new cluster's first contact with the root holder,
// before it trusts anything: it fetches the bundle without verifying the
// server, then accepts it only if it holds a root whose bundle.KeyID is
// rootKeyID (printed by `meridianctl trust join-token`, as kubeadm prints a
// CA hash). From then on it talks to the server verified by that bundle.
func FetchPinnedBundle(ctx context.Context, baseURL string, td spiffeid.TrustDomain, rootKeyID string) (*spiffebundle.Bundle, error) {
	insecure := NewClient(baseURL, td, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // checked against the pin below
	b, err := insecure.Bundle(ctx)
	if err != nil {
		return nil, err
	}
	for _, root := range b.X509Authorities() {
		if bundle.KeyID(root) == strings.ToLower(rootKeyID) {
			return b, nil
		}
	}
	return nil, errors.New("casvc: the server's bundle does not hold the pinned root; refusing it")
}

// TokenFile returns a function reading a token from a file on every call:
// kubelet rewrites projected service-account tokens before they expire.
func TokenFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("casvc: token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// Once returns token on the first call and "" afterwards: a join token is
// spent on the first SVID, renewals then authenticate with the current SVID
// (the Client must be built with ClientTLS(…, rotator)).
func Once(token string) func() (string, error) {
	var used atomic.Bool
	return func() (string, error) {
		if used.Swap(true) {
			return "", nil
		}
		return token, nil
	}
}

// Fetcher adapts a Client to svid.Rotator: each call reads the token anew
// (TokenFile, Once) and sends the Rotator's CSR.
type Fetcher struct {
	Client *Client
	Token  func() (string, error)
	// TTL asks for a lifetime; 0 is the CA's default.
	TTL time.Duration
}

// FetchSVID implements svid.Fetcher.
func (f Fetcher) FetchSVID(ctx context.Context, csr []byte) ([]*x509.Certificate, *spiffebundle.Bundle, error) {
	tok, err := f.Token()
	if err != nil {
		return nil, nil, err
	}
	return f.Client.SignSVID(ctx, SVIDRequest{CSR: csr, Token: tok, TTLSeconds: int64(f.TTL / time.Second)})
}
