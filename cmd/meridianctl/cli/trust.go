package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

func newTrustCommand(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Manage the mesh's root of trust, cluster CAs, join tokens and bundles",
		Long: `The mesh has one root of trust. It signs one intermediate CA per cluster, and
each cluster's meridiand signs short-lived SPIFFE X.509-SVIDs for its
workloads (spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT).

init and issue-intermediate work offline on a CA directory (keep the root
key off the network); join-token, bundle and rotate ask a running meridiand.`,
	}
	cmd.AddCommand(newTrustInit(g), newTrustIssueIntermediate(g), newTrustJoinToken(g), newTrustBundle(g), newTrustRotate(g))
	return cmd
}

func newTrustInit(g *Globals) *cobra.Command {
	var dir, td, keyType, importCert, importKey string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the mesh's root CA (or import one) into a CA directory",
		Long: `Create a root CA for the trust domain (ECDSA P-256 by default, 10 years), or
import an existing root certificate and key, into --dir: root-cert.pem,
root-key.pem (mode 0600) and trust-domain. Start the root holder's meridiand
with --trust-root-dir DIR once: it seals the root into its etcd.`,
		Example: `  meridianctl trust init --trust-domain mesh.example.com --dir ./ca
  meridianctl trust init --trust-domain mesh.example.com --dir ./ca --import-cert root.pem --import-key root-key.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			domain, err := spiffeid.TrustDomainFromString(td)
			if err != nil {
				return Hint(fmt.Errorf("--trust-domain %q: %w", td, err), "a trust domain is a DNS-like name, for example mesh.example.com")
			}
			var certPEM, keyPEM []byte
			if importCert != "" || importKey != "" {
				if importCert == "" || importKey == "" {
					return errors.New("--import-cert and --import-key go together")
				}
				if certPEM, err = os.ReadFile(importCert); err != nil {
					return err
				}
				if keyPEM, err = os.ReadFile(importKey); err != nil {
					return err
				}
			}
			root, err := service.InitRootDir(dir, ca.RootOptions{TrustDomain: domain, KeyType: ca.KeyType(keyType), TTL: ttl}, certPEM, keyPEM)
			if err != nil {
				return err
			}
			c := root.Certificate()
			fmt.Fprintf(g.Out, "root CA for %s written to %s\n  expires %s\n  key ID  %s\n", domain, dir, c.NotAfter.Format(time.RFC3339), bundle.KeyID(c))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "ca", "CA directory to write")
	f.StringVar(&td, "trust-domain", "cluster.local", "the mesh's trust domain")
	f.StringVar(&keyType, "key-type", string(ca.ECDSAP256), "root key: ec-p256, ec-p384, rsa-2048 or rsa-4096")
	f.DurationVar(&ttl, "ttl", ca.DefaultRootTTL, "lifetime of a new root")
	f.StringVar(&importCert, "import-cert", "", "import this root certificate (PEM) instead of creating one")
	f.StringVar(&importKey, "import-key", "", "the imported root's private key (PEM)")
	return cmd
}

func newTrustIssueIntermediate(g *Globals) *cobra.Command {
	var dir, cluster string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue-intermediate",
		Short: "Issue a cluster's intermediate CA from the root in a CA directory",
		Long: `Have the root in --dir sign a new intermediate CA for one cluster, written to
DIR/CLUSTER (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem). Start
that cluster's meridiand with --trust-ca-dir DIR/CLUSTER once: it seals the
key into its etcd.

The intermediate may sign only SVIDs (path length 0) and only URIs of the
trust domain (name constraint). Its URI SAN,
spiffe://TRUST-DOMAIN/meridian/cluster/CLUSTER, names the cluster to peers.`,
		Example: `  meridianctl trust issue-intermediate --dir ./ca --cluster eks-euw1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster == "" {
				return errors.New("--cluster is required")
			}
			out, err := service.IssueIntermediateDir(dir, cluster, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "intermediate CA for cluster %s written to %s\n  start its meridiand with --trust --trust-ca-dir %s\n", cluster, out, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "ca", "CA directory holding the root")
	f.StringVar(&cluster, "cluster", "", "cluster name (required)")
	f.DurationVar(&ttl, "ttl", ca.DefaultIntermediateTTL, "lifetime of the intermediate (never past the root's)")
	return cmd
}

func newTrustJoinToken(g *Globals) *cobra.Command {
	var cluster, namespace, sa string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Mint a single-use join token for a cluster or a workload outside Kubernetes",
		Long: `Ask meridiand (on this host: tokens are minted for loopback callers only) for
a single-use token that expires. With --cluster it lets a new cluster's
meridiand ask this root holder for its intermediate (print the flags to
give it); with --namespace and --service-account it lets a VM or process
get its first SVID from the CA service, renewing with that SVID after.`,
		Example: `  meridianctl trust join-token --cluster eks-euw1
  meridianctl trust join-token --namespace billing --service-account batch --ttl 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &trustpb.CreateJoinTokenRequest{Ttl: durationpb.New(ttl)}
			switch {
			case cluster != "" && (namespace != "" || sa != ""):
				return errors.New("give --cluster, or --namespace with --service-account, not both")
			case cluster != "":
				req.Identity = &trustpb.CreateJoinTokenRequest_Cluster{Cluster: cluster}
			case namespace != "" && sa != "":
				req.Identity = &trustpb.CreateJoinTokenRequest_Workload{Workload: &trustpb.Workload{Namespace: namespace, ServiceAccount: sa}}
			default:
				return errors.New("give --cluster, or --namespace with --service-account")
			}
			conn, err := g.Dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := g.Request(cmd.Context())
			defer cancel()
			resp, err := trustpb.NewTrustServiceClient(conn).CreateJoinToken(ctx, req)
			if err != nil {
				return trustHint(err)
			}
			return g.Print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "token\t%s\nidentity\t%s\nexpires\t%s\nroot key IDs\t%s\n", resp.Token, resp.SpiffeId, resp.Expires.AsTime().Format(time.RFC3339), strings.Join(resp.RootKeyIds, ", "))
				if cluster != "" && len(resp.RootKeyIds) > 0 {
					url := resp.CaUrl
					if url == "" {
						url = "https://ROOT-HOLDER:15012"
					}
					fmt.Fprintf(w, "\nstart cluster %s's meridiand with:\n  --trust --trust-join-url %s --trust-join-token %s --trust-join-root-key %s\n", cluster, url, resp.Token, resp.RootKeyIds[0])
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "bind the token to this cluster's control plane")
	f.StringVar(&namespace, "namespace", "", "bind the token to a workload in this namespace")
	f.StringVar(&sa, "service-account", "", "the workload's service account")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token may wait to be used (at most 168h)")
	return cmd
}

func newTrustBundle(g *Globals) *cobra.Command {
	var pemDir string
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Show the trust bundles meridiand trusts (the mesh's and federated ones)",
		Long: `Show every trust bundle this meridiand verifies peers with: the mesh's own
(with its sequence number, which a root rotation raises) and those of
foreign trust domains federated explicitly. With --pem-dir, also write each
bundle's roots as TRUST-DOMAIN.pem, for applications that need a CA file.`,
		Example: `  meridianctl trust bundle
  meridianctl trust bundle -o json
  meridianctl trust bundle --pem-dir ./bundles`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := g.Dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := g.Request(cmd.Context())
			defer cancel()
			resp, err := trustpb.NewTrustServiceClient(conn).GetBundle(ctx, &trustpb.GetBundleRequest{})
			if err != nil {
				return trustHint(err)
			}
			if pemDir != "" {
				if err := os.MkdirAll(pemDir, 0o755); err != nil {
					return err
				}
				for _, b := range resp.Bundles {
					if err := os.WriteFile(filepath.Join(pemDir, b.TrustDomain+".pem"), []byte(b.RootsPem), 0o644); err != nil {
						return err
					}
				}
			}
			return g.Print(resp, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "TRUST DOMAIN\tLOCAL\tSEQUENCE\tROOTS")
				for _, b := range resp.Bundles {
					roots, _ := ca.ParseCertificates([]byte(b.RootsPem))
					var ids []string
					for _, r := range roots {
						ids = append(ids, fmt.Sprintf("%.16s (expires %s)", bundle.KeyID(r), r.NotAfter.Format("2006-01-02")))
					}
					fmt.Fprintf(w, "%s\t%v\t%d\t%s\n", b.TrustDomain, b.Local, b.Sequence, strings.Join(ids, ", "))
				}
			})
		},
	}
	cmd.Flags().StringVar(&pemDir, "pem-dir", "", "also write each bundle's roots to DIR/TRUST-DOMAIN.pem")
	return cmd
}

func trustHint(err error) error {
	switch status.Code(err) {
	case codes.Unimplemented:
		return Hint(errors.New("this meridiand runs no CA"), "start it with --trust (trust.enabled)")
	case codes.PermissionDenied:
		return Hint(err, "run meridianctl on meridiand's own host: join tokens and rotation steps are not given over the network")
	}
	return err
}
