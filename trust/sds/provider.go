package sds

import (
	"context"
	"fmt"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/internal/notify"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// Provider is the adapter the xDS server publishes secrets through: the
// SVID of a proxy's identity (minted and rotated by the SVID manager) and
// the trust bundle, as Secret resources, and a signal when either changes.
// It is safe for concurrent use.
type Provider struct {
	svids   *svid.Manager
	bundles *bundle.Source
	changed notify.Notifier
}

// NewProvider returns a Provider over the control plane's SVID manager and
// bundle source.
func NewProvider(svids *svid.Manager, bundles *bundle.Source) *Provider {
	return &Provider{svids: svids, bundles: bundles}
}

// Secrets returns the two secrets a proxy running as id needs: its SVID
// (named SVIDSecretName(id)) and the bundle (BundleSecretName). Call it
// again after every change signal: both rotate.
func (p *Provider) Secrets(id spiffeid.ID) ([]*tlsv3.Secret, error) {
	s, err := p.svids.Get(id)
	if err != nil {
		return nil, fmt.Errorf("sds: %w", err)
	}
	cert, err := SVIDSecret(s)
	if err != nil {
		return nil, err
	}
	b, err := BundleSecret(p.bundles.Bundles())
	if err != nil {
		return nil, err
	}
	return []*tlsv3.Secret{cert, b}, nil
}

// Run forwards the SVID manager's and the bundle source's change signals to
// Subscribe's subscribers until ctx ends.
func (p *Provider) Run(ctx context.Context) error {
	s, cancelS := p.svids.Subscribe()
	defer cancelS()
	b, cancelB := p.bundles.Subscribe()
	defer cancelB()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s:
		case <-b:
		}
		p.changed.Notify()
	}
}

// Subscribe returns a channel that receives a value after SVIDs or bundles
// changed (see package notify; needs Run) and the function that ends the
// subscription.
func (p *Provider) Subscribe() (<-chan struct{}, func()) { return p.changed.Subscribe() }

// AttestStream proves which workload an xDS stream serves before it gets a
// private key: the proxy sends its projected service-account token in the
// stream's "authorization: Bearer TOKEN" metadata (Envoy:
// initial_metadata of the ADS grpc_service; meridian-proxy does it
// itself), and the token is reviewed. The result must match the node's
// claimed namespace and service account; otherwise publish no SVID.
func AttestStream(ctx context.Context, kube *attest.Kube) (spiffeid.ID, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			return kube.Attest(ctx, tok)
		}
	}
	return spiffeid.ID{}, fmt.Errorf("sds: the stream carries no bearer token")
}
