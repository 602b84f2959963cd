package sds

import (
	"context"
	"fmt"
	"strings"
	"sync"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// Provider is the adapter the xDS server publishes secrets through: the
// SVID of a proxy's identity (minted and rotated by the SVID manager) and
// the trust bundle, as Secret resources, and a signal when either changes.
// It is safe for concurrent use.
type Provider struct {
	svids   *svid.Manager
	bundles *bundle.Source
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

// Subscribe returns a channel that receives a value after SVIDs or the
// bundles changed (one value for any number of changes, as package notify
// does) and the function that ends the subscription. Both sources are
// subscribed to before Subscribe returns, so no change after it is missed;
// the forwarding goroutine ends with the returned function.
func (p *Provider) Subscribe() (<-chan struct{}, func()) {
	s, cancelS := p.svids.Subscribe()
	b, cancelB := p.bundles.Subscribe()
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-s:
			case <-b:
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	})
	var once sync.Once
	return out, func() {
		once.Do(func() {
			cancelS()
			cancelB()
			close(done)
			wg.Wait()
		})
	}
}

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
