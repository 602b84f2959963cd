package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// This file is SDS on the ADS stream: which workload a stream serves
// (attestation), the secrets that identity may hold (its SVID, the trust
// bundle, and the credentials its namespace's Gateways and
// DestinationPolicies name), and their rebuild when the trust component
// rotates anything.

// SecretSource hands out a workload's secrets: trust/sds.Provider.
// Secrets may be called concurrently; Subscribe's channel receives a value
// after SVIDs or bundles change, and its function ends the subscription.
type SecretSource interface {
	Secrets(id spiffeid.ID) ([]*tlsv3.Secret, error)
	Subscribe() (<-chan struct{}, func())
}

// Attestor proves which workload an ADS stream serves, before the stream
// may receive the workload's private key. It is called once per stream,
// when the stream opens, on the stream's goroutine; it may block briefly
// (a TokenReview). ok is false when the stream presents no credential at
// all: it is then served without secrets and without mTLS. An error means
// a credential was presented and refused: the stream is closed.
type Attestor interface {
	Attest(ctx context.Context) (id spiffeid.ID, ok bool, err error)
}

// AttestorFunc adapts a function to Attestor.
type AttestorFunc func(ctx context.Context) (spiffeid.ID, bool, error)

// Attest implements Attestor.
func (f AttestorFunc) Attest(ctx context.Context) (spiffeid.ID, bool, error) { return f(ctx) }

// KubeTokens attests streams in Kubernetes: the proxy sends its projected
// service-account token as "authorization: Bearer TOKEN" stream metadata
// (Envoy: initial_metadata of its ADS grpc_service), and the token is
// reviewed (trust/sds.AttestStream, a TokenReview through client-go).
func KubeTokens(kube *attest.Kube) Attestor {
	return AttestorFunc(func(ctx context.Context) (spiffeid.ID, bool, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md.Get("authorization")) == 0 {
			return spiffeid.ID{}, false, nil
		}
		id, err := sds.AttestStream(ctx, kube)
		return id, err == nil, err
	})
}

// PeerSVID attests streams outside Kubernetes: a stream that arrives over
// mutual TLS whose client certificate is an X.509-SVID chaining to a
// trusted bundle serves that SVID's workload. Such a proxy got its first
// SVID from the CA service with a single-use join token (trust/casvc) and
// rotates it itself (trust/svid.Rotator); it then connects to the xDS
// server with it. A plaintext stream presents nothing.
func PeerSVID(bundles x509bundle.Source) Attestor {
	return AttestorFunc(func(ctx context.Context) (spiffeid.ID, bool, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return spiffeid.ID{}, false, nil
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(info.State.PeerCertificates) == 0 {
			return spiffeid.ID{}, false, nil
		}
		id, _, err := x509svid.Verify(info.State.PeerCertificates, bundles)
		if err != nil {
			return spiffeid.ID{}, false, fmt.Errorf("xds: client certificate: %w", err)
		}
		return id, true, nil
	})
}

// Attestors tries each attestor in turn: the first that finds a credential
// decides.
func Attestors(as ...Attestor) Attestor {
	return AttestorFunc(func(ctx context.Context) (spiffeid.ID, bool, error) {
		for _, a := range as {
			if id, ok, err := a.Attest(ctx); ok || err != nil {
				return id, ok, err
			}
		}
		return spiffeid.ID{}, false, nil
	})
}

// CredentialSource hands out the certificates Gateways (credentialName of
// an HTTPS listener) and DestinationPolicies (client TLS) name, by the
// object's namespace and the name. ca is the bundle that verifies peers
// (for mutual TLS), nil when there is none. Called from the server's
// build goroutines, possibly concurrently.
type CredentialSource interface {
	Credential(namespace, name string) (certPEM, keyPEM, caPEM []byte, err error)
}

// FileCredentials reads credentials from a directory laid out as a
// mounted Kubernetes TLS Secret per credential:
// DIR/NAMESPACE/NAME/{tls.crt, tls.key, ca.crt} (ca.crt optional). Files
// are read at every build of the secrets that name them: on a policy
// change or a trust rotation.
func FileCredentials(dir string) CredentialSource { return fileCredentials(dir) }

type fileCredentials string

func (d fileCredentials) Credential(namespace, name string) (cert, key, ca []byte, err error) {
	for _, part := range []string{namespace, name} {
		if msgs := validation.IsDNS1123Subdomain(part); len(msgs) > 0 {
			return nil, nil, nil, fmt.Errorf("xds: credential %s/%s: %q: %s", namespace, name, part, msgs[0])
		}
	}
	base := filepath.Join(string(d), namespace, name)
	if cert, err = os.ReadFile(filepath.Join(base, "tls.crt")); err != nil {
		return nil, nil, nil, fmt.Errorf("xds: credential %s/%s: %w", namespace, name, err)
	}
	if key, err = os.ReadFile(filepath.Join(base, "tls.key")); err != nil {
		return nil, nil, nil, fmt.Errorf("xds: credential %s/%s: %w", namespace, name, err)
	}
	if ca, err = os.ReadFile(filepath.Join(base, "ca.crt")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("xds: credential %s/%s: %w", namespace, name, err)
	}
	return cert, key, ca, nil
}

// planSecrets rebuilds a secret group: the identity's SVID and the trust
// bundle, and the credentials translate.Credentials allows it. A secret
// that cannot be had is logged and left out (its previous version is
// dropped too: a credential no longer allowed must not linger).
func (s *Server) planSecrets(in translate.Input, g *group) *plan {
	p := &plan{g: g, full: true, byService: map[registry.ServiceKey][]string{}}
	seen := map[string]bool{}
	var res translate.Result
	id, err := spiffeid.FromString(g.scope.Identity)
	if err == nil && s.cfg.Secrets != nil {
		secrets, err := s.cfg.Secrets.Secrets(id)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("secrets of %s: %v", id, err))
		}
		for _, sec := range secrets {
			res.Resources = append(res.Resources, translate.Resource{Name: sec.GetName(), Message: sec})
		}
	}
	for _, ref := range translate.Credentials(in, g.scope) {
		if s.cfg.Credentials == nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("credential %s: this control plane has no credential source", ref.SecretName()))
			continue
		}
		cert, key, ca, err := s.cfg.Credentials.Credential(ref.Namespace, ref.Name)
		switch {
		case err != nil:
			res.Warnings = append(res.Warnings, err.Error())
		case ref.CA:
			// Checked before publishing: a proxy would NACK garbage.
			if !x509.NewCertPool().AppendCertsFromPEM(ca) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("credential %s/%s has no CA bundle (ca.crt) to verify peers with", ref.Namespace, ref.Name))
				continue
			}
			res.Resources = append(res.Resources, translate.Resource{Name: ref.SecretName(), Message: translate.CredentialSecret(ref, ca, nil)})
		default:
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("credential %s/%s: %v", ref.Namespace, ref.Name, err))
				continue
			}
			res.Resources = append(res.Resources, translate.Resource{Name: ref.SecretName(), Message: translate.CredentialSecret(ref, cert, key)})
		}
	}
	s.planResources(p, res, seen)
	for name := range g.res {
		if !seen[name] {
			p.changes = append(p.changes, change{name: name})
		}
	}
	return p
}
