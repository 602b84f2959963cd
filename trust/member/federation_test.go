package member_test

import (
	"testing"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// Credentials fit the federation package's hooks as they are.
var (
	_ federation.Credentials   = (*member.Credentials)(nil)
	_ federation.Authenticator = (*member.Credentials)(nil)
)

func TestCredentials(t *testing.T) {
	m := newMesh(t)
	a, b := svid.NewManager(svid.ManagerConfig{Minter: m.a}), svid.NewManager(svid.ManagerConfig{Minter: m.b})
	aID, _ := member.ID(td, "a")
	bID, _ := member.ID(td, "b")
	ca := member.NewCredentials(a.Source(aID), m.bundles, td)
	cb := member.NewCredentials(b.Source(bID), bundle.NewSource(m.bundles.Bundles()...), td)
	srv, _, err := handshake(t, ca.ServerTLS(), cb.ClientTLS())
	if err != nil || srv.err != nil {
		t.Fatalf("client %v, server %v", err, srv.err)
	}
	if err := ca.Authenticate("b", srv.state); err != nil {
		t.Fatal(err)
	}
	if err := ca.Authenticate("a", srv.state); err == nil {
		t.Fatal("b passed as a")
	}
}
