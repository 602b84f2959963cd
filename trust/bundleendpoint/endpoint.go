// Package bundleendpoint lets a foreign trust domain be trusted explicitly,
// as the SPIFFE Trust Domain and Bundle specification describes: meridiand
// serves its mesh's bundle on a bundle endpoint, and fetches the bundles of
// the foreign trust domains an operator configured, each from its endpoint,
// keeping them fresh in the bundle.Source peers are verified with.
//
// Both profiles of the specification are supported:
//
//   - https_web: the endpoint presents a Web PKI certificate (verified
//     with WebRoots, or the system roots);
//   - https_spiffe: the endpoint presents an SVID of the foreign trust
//     domain, verified with that domain's own bundle — bootstrapped once,
//     out of band, then the bundle the endpoint itself served last.
//
// A foreign trust domain that was never configured is never trusted, and a
// served bundle with a lower sequence number than the one held is ignored
// (no rollback to a retired root). The server side is go-spiffe's
// federation.NewHandler over a bundle.Source; the client is go-spiffe's
// federation.WatchBundle.
package bundleendpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/bundle"
)

// Profile is how a bundle endpoint authenticates itself.
type Profile string

// Profiles of the SPIFFE bundle endpoint.
const (
	HTTPSWeb    Profile = "https_web"
	HTTPSSPIFFE Profile = "https_spiffe"
)

// DefaultRefresh is how often a foreign bundle is fetched when the endpoint
// gives no refresh hint.
const DefaultRefresh = 5 * time.Minute

// Handler serves td's bundle from bundles. Serve it over TLS: with an SVID
// for https_spiffe (SPIFFETLS), or with a Web PKI certificate for
// https_web.
func Handler(td spiffeid.TrustDomain, bundles *bundle.Source) (http.Handler, error) {
	h, err := federation.NewHandler(td, bundles)
	if err != nil {
		return nil, fmt.Errorf("bundleendpoint: %w", err)
	}
	return h, nil
}

// SPIFFETLS is the server tls.Config of an https_spiffe endpoint: it
// presents svid (meridiand's member SVID; foreign fetchers are told its ID).
func SPIFFETLS(svid x509svid.Source) *tls.Config { return tlsconfig.TLSServerConfig(svid) }

// Foreign is one explicitly federated trust domain.
type Foreign struct {
	TrustDomain spiffeid.TrustDomain
	// URL of its bundle endpoint.
	URL     string
	Profile Profile
	// EndpointID is the SPIFFE ID the endpoint presents (https_spiffe).
	EndpointID spiffeid.ID
	// Bootstrap is the foreign bundle obtained out of band, to verify the
	// first fetch (https_spiffe).
	Bootstrap *spiffebundle.Bundle
	// WebRoots verify an https_web endpoint; nil means the system roots.
	WebRoots *x509.CertPool
	// Refresh when the endpoint gives no hint; default DefaultRefresh.
	Refresh time.Duration
}

func (f Foreign) validate(own spiffeid.TrustDomain) error {
	switch {
	case f.TrustDomain.IsZero() || f.URL == "":
		return errors.New("bundleendpoint: a foreign trust domain needs a name and a URL")
	case f.TrustDomain == own:
		return fmt.Errorf("bundleendpoint: %s is this mesh's own trust domain", own)
	case f.Profile == HTTPSSPIFFE && (!f.EndpointID.MemberOf(f.TrustDomain) || f.Bootstrap == nil || f.Bootstrap.TrustDomain() != f.TrustDomain):
		return fmt.Errorf("bundleendpoint: %s: https_spiffe needs the endpoint's SPIFFE ID in that trust domain and a bootstrap bundle of it", f.TrustDomain)
	case f.Profile != HTTPSSPIFFE && f.Profile != HTTPSWeb:
		return fmt.Errorf("bundleendpoint: %s: profile %q (want %s or %s)", f.TrustDomain, f.Profile, HTTPSWeb, HTTPSSPIFFE)
	}
	return nil
}

// Watch keeps f's bundle in into, fetching it from its endpoint until ctx
// ends. For https_spiffe the bootstrap bundle is put in into first. Fetch
// errors are logged and retried at the next refresh; the bundle held
// stays.
func Watch(ctx context.Context, own spiffeid.TrustDomain, f Foreign, into *bundle.Source, log *slog.Logger) error {
	if err := f.validate(own); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	w := &watcher{f: f, into: into, log: log.With("component", "trust.bundleendpoint", "trust_domain", f.TrustDomain.Name())}
	var opt federation.FetchOption
	if f.Profile == HTTPSSPIFFE {
		if _, ok := into.Get(f.TrustDomain); !ok {
			into.Set(f.Bootstrap)
		}
		opt = federation.WithSPIFFEAuth(into, f.EndpointID)
	} else {
		opt = federation.WithWebPKIRoots(f.WebRoots)
	}
	err := federation.WatchBundle(ctx, f.TrustDomain, f.URL, w, opt)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("bundleendpoint: %s: %w", f.TrustDomain, err)
}

type watcher struct {
	f    Foreign
	into *bundle.Source
	log  *slog.Logger
}

func (w *watcher) NextRefresh(hint time.Duration) time.Duration {
	if hint > 0 {
		return hint
	}
	if w.f.Refresh > 0 {
		return w.f.Refresh
	}
	return DefaultRefresh
}

func (w *watcher) OnUpdate(b *spiffebundle.Bundle) {
	if cur, ok := w.into.Get(w.f.TrustDomain); ok {
		held, ok1 := cur.SequenceNumber()
		got, ok2 := b.SequenceNumber()
		if ok1 && ok2 && got < held {
			w.log.Warn("foreign bundle endpoint served an older bundle; keeping the newer one", "held", held, "served", got)
			return
		}
	}
	w.into.Set(b)
	w.log.Info("foreign bundle updated", "roots", len(b.X509Authorities()))
}

func (w *watcher) OnError(err error) {
	w.log.Warn("foreign bundle fetch failed; keeping the bundle held", "url", w.f.URL, "error", err)
}
