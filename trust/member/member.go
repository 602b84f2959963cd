// Package member is the identity of a control plane among its peers: the
// certificate meridiand presents on the federation gRPC (and on its CA
// service) and the checks a peer makes before believing who it is.
//
// A member's identity is spiffe://TD/meridian/cluster/NAME, an X.509-SVID
// its own cluster's authority mints (svid.Manager.Get(member ID)). Chaining
// to the mesh root is not enough to believe it: every cluster's
// intermediate can sign any URI in the trust domain, so a compromised
// cluster B could mint "cluster A". Verify therefore also requires the
// certificate that issued the member's SVID to be cluster NAME's own
// intermediate, whose URI SAN (spiffe://TD/meridian/cluster/NAME) only the
// root could have put there. A member claiming a name in gossip is checked
// against that name with VerifyClaim.
//
// The package builds tls.Configs and verifies; it does not dial, listen or
// gossip (package federation does).
package member

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust"
)

// ID is the SPIFFE ID of cluster's control plane.
func ID(td spiffeid.TrustDomain, cluster string) (spiffeid.ID, error) {
	return trust.ClusterID(td, cluster)
}

// Verify checks a peer's certificate chain (leaf first, as presented in a
// handshake) against the bundles and returns the cluster it proves. The
// leaf must be a member ID, and it must be issued by that same cluster's
// intermediate.
func Verify(certs []*x509.Certificate, bundles x509bundle.Source) (string, error) {
	id, chains, err := x509svid.Verify(certs, bundles)
	if err != nil {
		return "", fmt.Errorf("member: %w", err)
	}
	return clusterOf(id, chains)
}

func clusterOf(id spiffeid.ID, chains [][]*x509.Certificate) (string, error) {
	cluster, ok := trust.ParseClusterID(id)
	if !ok {
		return "", fmt.Errorf("member: %s is not a control plane's identity (spiffe://TD/meridian/cluster/NAME)", id)
	}
	for _, chain := range chains {
		if len(chain) > 1 && len(chain[1].URIs) == 1 && chain[1].URIs[0].String() == id.String() {
			return cluster, nil
		}
	}
	return "", fmt.Errorf("member: %s was not issued by cluster %s's own intermediate", id, cluster)
}

// VerifyClaim checks that the peer of a finished TLS handshake is the
// cluster it claims to be (a name from gossip metadata or a request).
func VerifyClaim(claimed string, state tls.ConnectionState, bundles x509bundle.Source) error {
	if len(state.PeerCertificates) == 0 {
		return errors.New("member: the peer presented no certificate")
	}
	got, err := Verify(state.PeerCertificates, bundles)
	if err != nil {
		return err
	}
	if got != claimed {
		return fmt.Errorf("member: peer claims cluster %q but its certificate is cluster %q's", claimed, got)
	}
	return nil
}

// Authorizer admits members of td (see Verify), for go-spiffe's tlsconfig.
func Authorizer(td spiffeid.TrustDomain) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if !id.MemberOf(td) {
			return fmt.Errorf("member: %s is not in trust domain %s", id, td)
		}
		_, err := clusterOf(id, chains)
		return err
	}
}

// AuthorizeCluster admits only cluster's control plane.
func AuthorizeCluster(td spiffeid.TrustDomain, cluster string) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		got, err := clusterOf(id, chains)
		if err != nil {
			return err
		}
		if !id.MemberOf(td) || got != cluster {
			return fmt.Errorf("member: want cluster %s of %s, peer is %s", cluster, td, id)
		}
		return nil
	}
}

// ServerTLS is the tls.Config of a member's federation gRPC server: it
// presents the member SVID from svid and requires every client to be a
// member (mutual TLS, TLS 1.3).
func ServerTLS(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain) *tls.Config {
	c := tlsconfig.MTLSServerConfig(svid, bundles, Authorizer(td))
	c.MinVersion = tls.VersionTLS13
	return c
}

// ClientTLS is the tls.Config with which a member dials another. With a
// cluster name it admits only that cluster's control plane; with "" any
// member.
func ClientTLS(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain, cluster string) *tls.Config {
	auth := Authorizer(td)
	if cluster != "" {
		auth = AuthorizeCluster(td, cluster)
	}
	c := tlsconfig.MTLSClientConfig(svid, bundles, auth)
	c.MinVersion = tls.VersionTLS13
	return c
}

// Credentials are a member's TLS identity in the shape package federation
// takes (its Credentials and Authenticator interfaces): the member SVID
// presented both ways, peers verified against the mesh bundle as members,
// and the cluster a peer claims in gossip checked against its certificate.
type Credentials struct {
	svid    x509svid.Source
	bundles x509bundle.Source
	td      spiffeid.TrustDomain
}

// NewCredentials builds Credentials from the member's SVID source
// (svid.Manager.Source(member ID)) and the mesh bundle source.
func NewCredentials(svid x509svid.Source, bundles x509bundle.Source, td spiffeid.TrustDomain) *Credentials {
	return &Credentials{svid: svid, bundles: bundles, td: td}
}

// ServerTLS implements federation.Credentials.
func (c *Credentials) ServerTLS() *tls.Config { return ServerTLS(c.svid, c.bundles, c.td) }

// ClientTLS implements federation.Credentials: any member is accepted at
// the handshake (members are dialled by address); which cluster it is gets
// checked by Authenticate.
func (c *Credentials) ClientTLS() *tls.Config { return ClientTLS(c.svid, c.bundles, c.td, "") }

// Authenticate implements federation.Authenticator.
func (c *Credentials) Authenticate(cluster string, state tls.ConnectionState) error {
	return VerifyClaim(cluster, state, c.bundles)
}
