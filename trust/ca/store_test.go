package ca_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

func sealer(t testing.TB, fill byte) *ca.Sealer {
	t.Helper()
	s, err := ca.NewSealer(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealer(t *testing.T) {
	s := sealer(t, 1)
	sealed, err := s.Seal([]byte("secret"), []byte("/meridian/trust/root"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("plaintext visible")
	}
	if pt, err := s.Open(sealed, []byte("/meridian/trust/root")); err != nil || string(pt) != "secret" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := s.Open(sealed, []byte("/meridian/trust/intermediate")); err == nil {
		t.Error("opened under another etcd key")
	}
	_, err = sealer(t, 2).Open(sealed, []byte("/meridian/trust/root"))
	if err == nil || !strings.Contains(err.Error(), "sealed with key") {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := s.Open([]byte{1, 2, 3}, nil); err == nil {
		t.Error("opened garbage")
	}
	if _, err := ca.NewSealer([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
}

func TestLoadSealer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	want := sealer(t, 7).KeyID()
	dir := t.TempDir()
	b64 := filepath.Join(dir, "b64")
	raw := filepath.Join(dir, "raw")
	os.WriteFile(b64, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	os.WriteFile(raw, key, 0o600)

	for name, load := range map[string]func() (*ca.Sealer, error){
		"file base64": func() (*ca.Sealer, error) { return ca.LoadSealer(b64) },
		"file raw":    func() (*ca.Sealer, error) { return ca.LoadSealer(raw) },
		"env key": func() (*ca.Sealer, error) {
			t.Setenv(ca.EnvKey, base64.StdEncoding.EncodeToString(key))
			return ca.LoadSealer("")
		},
		"env file": func() (*ca.Sealer, error) {
			t.Setenv(ca.EnvKey, "")
			t.Setenv(ca.EnvKeyFile, b64)
			return ca.LoadSealer("")
		},
	} {
		s, err := load()
		if err != nil || s.KeyID() != want {
			t.Errorf("%s: %v", name, err)
		}
	}
	t.Setenv(ca.EnvKey, "")
	t.Setenv(ca.EnvKeyFile, "")
	if _, err := ca.LoadSealer(""); err == nil || !strings.Contains(err.Error(), ca.EnvKey) {
		t.Errorf("no key: %v", err)
	}
	t.Setenv(ca.EnvKey, "not base64!")
	if _, err := ca.LoadSealer(""); err == nil {
		t.Error("garbage key accepted")
	}
}

// CA keys reach etcd sealed, come back intact, and a second init does not
// replace the root.
func TestStoreInEtcd(t *testing.T) {
	ctx := context.Background()
	cli := trusttest.Etcd(t)
	c := trusttest.NewCA(t, td, "eks-use1")
	st := ca.NewStore(cli, "/meridian/trust", sealer(t, 1))

	if err := st.CreateRoot(ctx, c.Root); err != nil {
		t.Fatal(err)
	}
	other, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err := st.CreateRoot(ctx, other); err == nil || !strings.Contains(err.Error(), "already holds a root") {
		t.Fatalf("second init: %v", err)
	}
	if err := st.SaveIntermediate(ctx, td, "eks-use1", c.Authority.Chain(), c.Key); err != nil {
		t.Fatal(err)
	}

	root, err := st.LoadRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Certificate().Equal(c.Root.Certificate()) || root.TrustDomain() != td {
		t.Fatal("root changed on the way")
	}
	cluster, chain, key, err := st.LoadIntermediate(ctx)
	if err != nil || cluster != "eks-use1" || !chain[0].Equal(c.Authority.Chain()[0]) {
		t.Fatalf("intermediate: %v %v", cluster, err)
	}
	// The loaded key still signs for the chain.
	if _, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: cluster, Chain: chain, Key: key}); err != nil {
		t.Fatal(err)
	}

	// Encrypted at rest: no PEM private key in etcd.
	resp, err := cli.Get(ctx, "/meridian/trust/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 {
		t.Fatalf("%d keys under /meridian/trust/", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte("PRIVATE KEY")) {
			t.Fatalf("%s holds a private key in the clear", kv.Key)
		}
	}

	// The wrong sealing key is a clear error, not a garbage key.
	_, err = ca.NewStore(cli, "/meridian/trust", sealer(t, 9)).LoadRoot(ctx)
	if err == nil || !strings.Contains(err.Error(), "sealed with key") {
		t.Fatalf("wrong sealing key: %v", err)
	}
	if _, err := ca.NewStore(cli, "/elsewhere", sealer(t, 1)).LoadRoot(ctx); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("empty prefix: %v", err)
	}
	if err := st.ReplaceRoot(ctx, other); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.LoadRoot(ctx); !r.Certificate().Equal(other.Certificate()) {
		t.Fatal("ReplaceRoot did not replace")
	}
}
