package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust/ca"
)

// TrustDomainFile names the trust domain in a root directory (an imported
// root need not carry it).
const TrustDomainFile = "trust-domain"

// InitRootDir writes a root into dir (created 0700): a new one made with
// opts, or the imported certPEM and keyPEM when given. It refuses a
// directory that already holds a root. The key is written 0600 and in the
// clear: keep the directory offline, or hand it to the root holder's
// meridiand (--trust-root-dir), which seals it into etcd.
func InitRootDir(dir string, opts ca.RootOptions, certPEM, keyPEM []byte) (*ca.Root, error) {
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); err == nil {
		return nil, fmt.Errorf("trust: %s already holds a root", dir)
	}
	var root *ca.Root
	var err error
	if certPEM != nil || keyPEM != nil {
		root, err = ca.ParseRoot(opts.TrustDomain, certPEM, keyPEM)
	} else {
		root, err = ca.NewRoot(opts)
	}
	if err != nil {
		return nil, err
	}
	cert, key, err := root.MarshalPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFiles(dir, map[string][]byte{RootCertFile: cert, RootKeyFile: key, TrustDomainFile: []byte(opts.TrustDomain.Name() + "\n")}); err != nil {
		return nil, err
	}
	return root, nil
}

// LoadRootDir reads the root InitRootDir wrote.
func LoadRootDir(dir string) (*ca.Root, error) {
	tdb, err := os.ReadFile(filepath.Join(dir, TrustDomainFile))
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(strings.TrimSpace(string(tdb)))
	if err != nil {
		return nil, fmt.Errorf("trust: %s: %w", TrustDomainFile, err)
	}
	cert, err := readPEM(dir, RootCertFile)
	if err != nil {
		return nil, err
	}
	key, err := readPEM(dir, RootKeyFile)
	if err != nil {
		return nil, err
	}
	return ca.ParseRoot(td, cert, key)
}

// IssueIntermediateDir has the root in rootDir issue cluster's intermediate
// (a new P-256 key) and writes it into rootDir/CLUSTER: ca-cert.pem,
// ca-key.pem, cert-chain.pem and root-cert.pem, what meridiand takes as
// --trust-ca-dir. It returns that directory.
func IssueIntermediateDir(rootDir, cluster string, ttl time.Duration) (string, error) {
	if cluster == "" || strings.ContainsAny(cluster, `/\`) || cluster == "." || cluster == ".." {
		return "", errors.New("trust: a cluster name is required, and is not a path")
	}
	root, err := LoadRootDir(rootDir)
	if err != nil {
		return "", err
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return "", err
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: cluster, PublicKey: key.Public(), TTL: ttl})
	if err != nil {
		return "", err
	}
	keyPEM, err := ca.MarshalPrivateKey(key)
	if err != nil {
		return "", err
	}
	out := filepath.Join(rootDir, cluster)
	return out, writeFiles(out, map[string][]byte{
		CACertFile:    ca.EncodeCertificates(ic),
		CAKeyFile:     keyPEM,
		CertChainFile: ca.EncodeCertificates(ic, root.Certificate()),
		RootCertFile:  ca.EncodeCertificates(root.Certificate()),
	})
}

func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	for name, data := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "-key.pem") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			return fmt.Errorf("trust: %w", err)
		}
	}
	return nil
}
