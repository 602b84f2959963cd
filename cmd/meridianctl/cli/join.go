package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/federation/federationpb"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

// `meridianctl join` connects a cluster to the mesh in two steps, as
// kubeadm's `token create --print-join-command` and `join` do, because the
// pieces a new member needs live in two places that no API hands out over
// the network: a join token is minted only for callers on a member's own
// host (it is an identity), and the gossip keyring is a file on that host
// (it is the mesh's shared secret). So:
//
//  1. On the host of a meridiand already in the mesh (the root holder's,
//     when the new cluster gets its intermediate online), `join --cluster
//     NEW` collects the gossip seeds (alive members), the keyring, the
//     trust domain and roots, and a single-use join token, and writes them
//     as a meridiand configuration fragment (or merges them into NEW's
//     configuration file with --config) and as flags.
//  2. Once NEW's meridiand runs with them, `join --server NEW --mesh
//     MEMBER` checks the join from both sides: each sees the other alive,
//     and both trust the same roots.
//
// Unlike Consul's `consul join ADDR`, the new member is not told to join
// at run time: meridiand takes its seeds and its first CA at start, so the
// first start is the join, and what join writes is what a restart reuses.

func newJoinCommand(g *Globals) *cobra.Command {
	var o joinOptions
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Connect a cluster's control plane to the mesh: gossip seeds, keyring, trust",
		Long: `Connect a new cluster's meridiand to the mesh, in two steps.

1. Prepare, on the host of a meridiand already in the mesh (--mesh, default
   ` + DefaultServer + `): join tokens are minted only for callers on that host, and the
   gossip keyring is a file there (--gossip-key-file). Give the new cluster's
   name with --cluster. join collects the gossip seeds (the mesh's alive
   members), the keyring, the trust domain and a single-use join token with
   which the new meridiand fetches its intermediate CA from the root holder
   on its first start, and writes them to --dir: meridiand.yaml (a
   configuration fragment), gossip.keys and roots.pem. With --config, it
   also merges them into the new cluster's meridiand configuration file.
   It prints the equivalent meridiand flags. When the new cluster already
   has its intermediate (meridianctl trust issue-intermediate), give
   --trust-token=false: any member will do as --mesh then.

2. Check, once the new meridiand runs: join --server NEW --mesh MEMBER waits
   (up to --wait) until each side sees the other's cluster alive and both
   trust the same roots, and says what is missing if they do not.

Keep --dir secret: it holds the mesh's gossip keyring and the token.`,
		Example: `  # On the root holder's host: let cluster eks-euw1 join, write ./join-eks-euw1
  meridianctl join --cluster eks-euw1 --gossip-key-file /etc/meridian/gossip.keys

  # The same, merged straight into eks-euw1's meridiand configuration
  meridianctl join --cluster eks-euw1 --gossip-key-file /etc/meridian/gossip.keys \
    --config /etc/meridian/eks-euw1.yaml

  # A cluster whose intermediate was issued offline: only gossip is exchanged
  meridianctl join --cluster eks-euw1 --gossip-key-file gossip.keys --trust-token=false

  # After starting eks-euw1's meridiand: check that it joined
  meridianctl join --server 10.2.0.5:15010 --mesh 10.1.0.5:15010`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checking := cmd.Flags().Changed("server")
			switch {
			case o.cluster != "" && checking:
				return errors.New("give --cluster to prepare a join (on a mesh member's host), or --server to check one, not both")
			case o.cluster == "" && !checking:
				return errors.New("give --cluster NAME to prepare a join, or --server NEW-MERIDIAND to check one")
			case checking:
				if g.Server == o.mesh {
					return errors.New("--server and --mesh name the same meridiand: --server is the new cluster's, --mesh one already in the mesh")
				}
				return joinCheck(cmd.Context(), g, o)
			}
			return joinPrepare(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.mesh, "mesh", DefaultServer, "gRPC address of a meridiand already in the mesh (for a join token: on this host)")
	f.StringVar(&o.cluster, "cluster", "", "name of the cluster that joins (prepare)")
	f.StringVar(&o.keyFile, "gossip-key-file", "", "the mesh's gossip keyring: the file its meridiands' --gossip-key-file names")
	f.BoolVar(&o.insecure, "gossip-insecure", false, "the mesh gossips without keys (throwaway labs)")
	f.BoolVar(&o.token, "trust-token", true, "mint a join token with which the new meridiand gets its intermediate CA (false: it has one)")
	f.DurationVar(&o.ttl, "ttl", time.Hour, "how long the join token may wait to be used (at most 168h)")
	f.StringSliceVar(&o.seeds, "seeds", nil, "gossip addresses the new cluster reaches the mesh at, instead of those members advertise (NAT, NodePorts)")
	f.StringVar(&o.dir, "dir", "", "directory to write the join's files to (default ./join-CLUSTER)")
	f.StringVar(&o.config, "config", "", "also merge the join into this meridiand configuration file of the new cluster (created if absent)")
	f.DurationVar(&o.wait, "wait", time.Minute, "check: how long to wait for the new cluster to join")
	return cmd
}

type joinOptions struct {
	mesh, cluster, keyFile, dir, config string
	seeds                               []string
	insecure, token                     bool
	ttl, wait                           time.Duration
}

// JoinPlan is what prepare collected and wrote, printed with -o json|yaml.
type JoinPlan struct {
	Cluster        string     `json:"cluster"`
	Mesh           string     `json:"mesh"`
	MeshClusters   []string   `json:"meshClusters"`
	Seeds          []string   `json:"seeds"`
	GossipKeyFile  string     `json:"gossipKeyFile,omitempty"`
	GossipInsecure bool       `json:"gossipInsecure,omitempty"`
	TrustDomain    string     `json:"trustDomain,omitempty"`
	CAURL          string     `json:"caURL,omitempty"`
	Token          string     `json:"token,omitempty"`
	RootKeyID      string     `json:"rootKeyID,omitempty"`
	TokenExpires   *time.Time `json:"tokenExpires,omitempty"`
	Dir            string     `json:"dir"`
	ConfigFragment string     `json:"configFragment"`
	MergedInto     string     `json:"mergedInto,omitempty"`
	Flags          []string   `json:"flags"`
}

// joinFragment is the part of meridiand's configuration a join sets.
type joinFragment struct {
	Cluster    struct{ Name string } `json:"cluster"`
	Federation daemon.Federation     `json:"federation"`
	Trust      *daemon.Trust         `json:"trust,omitempty"`
}

func joinPrepare(ctx context.Context, g *Globals, o joinOptions) error {
	if errs := validation.IsDNS1123Label(o.cluster); len(errs) > 0 {
		return Hint(fmt.Errorf("--cluster %q: %s", o.cluster, strings.Join(errs, "; ")), "a cluster name is a DNS label, for example eks-euw1")
	}
	var keys []byte
	switch {
	case o.keyFile != "" && o.insecure:
		return errors.New("give --gossip-key-file or --gossip-insecure, not both")
	case o.keyFile == "" && !o.insecure:
		return Hint(errors.New("--gossip-key-file is required: the new member needs the mesh's gossip keyring"),
			"give the file the mesh's meridiands read (their --gossip-key-file, federation.keyFile); --gossip-insecure for a keyless lab")
	case o.keyFile != "":
		b, err := os.ReadFile(o.keyFile)
		if err != nil {
			return Hint(fmt.Errorf("--gossip-key-file: %w", err), "give the file the mesh's meridiands read (their --gossip-key-file)")
		}
		if _, err := federation.ParseKeys(b); err != nil {
			return Hint(fmt.Errorf("--gossip-key-file %s: %w", o.keyFile, err), "a keyring is base64 keys of 16, 24 or 32 bytes, one per line")
		}
		keys = b
	}
	conn, err := dialMember(o.mesh)
	if err != nil {
		return err
	}
	defer conn.Close()
	plan := JoinPlan{Cluster: o.cluster, Mesh: o.mesh, GossipInsecure: o.insecure}

	rctx, cancel := g.Request(ctx)
	st, err := federationpb.NewFederationStatusClient(conn).GetStatus(rctx, &federationpb.GetStatusRequest{})
	cancel()
	if err != nil {
		return memberError(err, "--mesh", o.mesh, g.Timeout)
	}
	for _, c := range st.GetClusters() {
		plan.MeshClusters = append(plan.MeshClusters, c.GetName())
		if c.GetName() == o.cluster && (c.GetState() == "alive" || c.GetState() == "suspect") {
			return Hint(fmt.Errorf("cluster %s is already in the mesh (%s, as %s sees it)", o.cluster, c.GetState(), st.GetCluster()),
				"cluster names are unique in the mesh: pick another, or stop the old one and wait until it is dead or left")
		}
	}
	for _, m := range st.GetMembers() {
		if len(o.seeds) == 0 && m.GetState() == "alive" && m.GetGossipAddr() != "" {
			plan.Seeds = append(plan.Seeds, m.GetGossipAddr())
		}
	}
	for _, s := range o.seeds {
		if err := registry.ValidateHostPort(s); err != nil {
			return Hint(fmt.Errorf("--seeds %q: %w", s, err), "give gossip addresses as host:port, for example 172.18.0.3:30946")
		}
		plan.Seeds = append(plan.Seeds, s)
	}
	if len(plan.Seeds) == 0 {
		return Hint(fmt.Errorf("meridiand at %s knows no alive member to seed gossip with", o.mesh), "it may still be starting: try again, or see 'meridianctl status --server "+o.mesh+"'")
	}
	slices.Sort(plan.Seeds)

	var trustCfg *daemon.Trust
	rctx, cancel = g.Request(ctx)
	bundles, err := trustpb.NewTrustServiceClient(conn).GetBundle(rctx, &trustpb.GetBundleRequest{})
	cancel()
	switch {
	case status.Code(err) == codes.Unimplemented:
		// The mesh runs without trust: gossip is all there is to exchange.
	case err != nil:
		return memberError(err, "--mesh", o.mesh, g.Timeout)
	default:
		local := slices.IndexFunc(bundles.GetBundles(), func(b *trustpb.Bundle) bool { return b.GetLocal() })
		if local < 0 {
			return fmt.Errorf("meridiand at %s runs trust but has no bundle of its own trust domain", o.mesh)
		}
		b := bundles.GetBundles()[local]
		plan.TrustDomain = b.GetTrustDomain()
		trustCfg = &daemon.Trust{Enabled: true, TrustDomain: plan.TrustDomain}
		if o.token {
			if err := checkRootHolder(ctx, g, conn, o.mesh, st.GetCluster()); err != nil {
				return err
			}
			rctx, cancel = g.Request(ctx)
			tok, err := trustpb.NewTrustServiceClient(conn).CreateJoinToken(rctx, &trustpb.CreateJoinTokenRequest{
				Identity: &trustpb.CreateJoinTokenRequest_Cluster{Cluster: o.cluster}, Ttl: durationpb.New(o.ttl)})
			cancel()
			switch {
			case status.Code(err) == codes.PermissionDenied:
				return Hint(fmt.Errorf("meridiand at %s mints join tokens only for callers on its own host", o.mesh),
					"run join on that host (ssh, or kubectl port-forward to its meridiand and give --mesh 127.0.0.1:PORT); --trust-token=false if the cluster has an intermediate from 'trust issue-intermediate'")
			case status.Code(err) == codes.InvalidArgument:
				return Hint(fmt.Errorf("join token refused: %s", oneLine(status.Convert(err).Message())), "fix --cluster or --ttl")
			case err != nil:
				return memberError(err, "--mesh", o.mesh, g.Timeout)
			case tok.GetCaUrl() == "":
				return Hint(fmt.Errorf("meridiand at %s serves no CA service the new cluster could reach", o.mesh),
					"start the root holder's meridiand with --trust-ca-addr HOST:PORT")
			case len(tok.GetRootKeyIds()) == 0:
				return fmt.Errorf("meridiand at %s minted a token but names no root to pin", o.mesh)
			}
			exp := tok.GetExpires().AsTime()
			plan.CAURL, plan.Token, plan.RootKeyID, plan.TokenExpires = tok.GetCaUrl(), tok.GetToken(), tok.GetRootKeyIds()[0], &exp
			trustCfg.Join = daemon.TrustJoin{URL: plan.CAURL, Token: plan.Token, RootKeyID: plan.RootKeyID}
		}
		if err := writeJoinFiles(&plan, o, keys, []byte(b.GetRootsPem())); err != nil {
			return err
		}
	}
	if trustCfg == nil {
		if err := writeJoinFiles(&plan, o, keys, nil); err != nil {
			return err
		}
	}

	var frag joinFragment
	frag.Cluster.Name = o.cluster
	frag.Federation = daemon.Federation{Enabled: true, Seeds: plan.Seeds, KeyFile: plan.GossipKeyFile, Insecure: o.insecure}
	frag.Trust = trustCfg
	raw, err := yaml.Marshal(frag)
	if err != nil {
		return err
	}
	head := fmt.Sprintf("# Written by `meridianctl join --cluster %s --mesh %s`: what cluster %s's\n# meridiand needs to join the mesh. Merge it into its configuration (or\n# use join --config). Secret: it holds a join token.\n", o.cluster, o.mesh, o.cluster)
	if err := os.WriteFile(plan.ConfigFragment, append([]byte(head), raw...), 0o600); err != nil {
		return err
	}
	if o.config != "" {
		if err := mergeJoinConfig(o.config, frag); err != nil {
			return err
		}
		plan.MergedInto = o.config
	}
	plan.Flags = joinFlags(frag)
	return printJoinPlan(g, plan)
}

// checkRootHolder refuses to mint a cluster's join token on a member that
// does not hold the root: only the root holder's CA service signs
// intermediates, so the new meridiand would fail on its first start. A
// meridiand without the rotation API, or whose trust state is not
// published yet, is not checked.
func checkRootHolder(ctx context.Context, g *Globals, conn *grpc.ClientConn, mesh, cluster string) error {
	rctx, cancel := g.Request(ctx)
	defer cancel()
	rs, err := trustpb.NewRootRotationClient(conn).GetRotation(rctx, &trustpb.GetRotationRequest{})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return nil
	case err != nil:
		return memberError(err, "--mesh", mesh, g.Timeout)
	case rs.GetRootHolder() != "" && rs.GetRootHolder() != cluster:
		return Hint(fmt.Errorf("meridiand at %s is cluster %s, and cluster %s holds the root: only its CA service signs a new cluster's intermediate", mesh, cluster, rs.GetRootHolder()),
			"run join on "+rs.GetRootHolder()+"'s meridiand host; or give --trust-token=false when the cluster has an intermediate from 'meridianctl trust issue-intermediate'")
	case rs.GetRootHolder() == "" && slices.ContainsFunc(rs.GetClusters(), func(c *trustpb.ClusterTrust) bool { return c.GetPublished() && c.GetCluster() == cluster }):
		// Cluster's own trust state is out and names no root holder: the
		// mesh's root is kept offline, as the lab and deploy/kind keep it.
		return Hint(fmt.Errorf("no cluster of the mesh holds its root online (cluster %s runs an intermediate issued offline), so none can sign a new cluster's intermediate", cluster),
			"issue it offline ('meridianctl trust issue-intermediate --cluster NAME', then meridiand --trust-ca-dir) and give join --trust-token=false")
	}
	return nil
}

// writeJoinFiles writes the keyring and the roots into the join directory.
func writeJoinFiles(plan *JoinPlan, o joinOptions, keys, roots []byte) error {
	dir := o.dir
	if dir == "" {
		dir = "join-" + o.cluster
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Hint(fmt.Errorf("--dir: %w", err), "give a directory you may write")
	}
	plan.Dir = dir
	plan.ConfigFragment = filepath.Join(dir, "meridiand.yaml")
	if keys != nil {
		plan.GossipKeyFile = filepath.Join(dir, "gossip.keys")
		if err := os.WriteFile(plan.GossipKeyFile, keys, 0o600); err != nil {
			return err
		}
	}
	if roots != nil {
		if err := os.WriteFile(filepath.Join(dir, "roots.pem"), roots, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mergeJoinConfig sets the join's fields in a meridiand configuration file
// and keeps every other field; the result must load as meridiand loads it.
func mergeJoinConfig(path string, frag joinFragment) error {
	doc := map[string]any{}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Hint(fmt.Errorf("--config: %w", err), "give the new cluster's meridiand configuration file")
	default:
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return Hint(fmt.Errorf("--config %s: %w", path, err), "fix the file, or leave --config out and merge "+frag.Cluster.Name+"'s fragment by hand")
		}
		if doc == nil {
			doc = map[string]any{}
		}
	}
	section := func(name string) map[string]any {
		m, _ := doc[name].(map[string]any)
		if m == nil {
			m = map[string]any{}
			doc[name] = m
		}
		return m
	}
	cl := section("cluster")
	if n, _ := cl["name"].(string); n != "" && n != frag.Cluster.Name {
		return Hint(fmt.Errorf("--config %s is cluster %q's configuration, not %q's", path, n, frag.Cluster.Name), "give --cluster the name in the file")
	}
	cl["name"] = frag.Cluster.Name
	fed := section("federation")
	fed["enabled"] = true
	fed["seeds"] = frag.Federation.Seeds
	delete(fed, "keyFile")
	delete(fed, "insecure")
	if frag.Federation.KeyFile != "" {
		fed["keyFile"] = frag.Federation.KeyFile
	} else {
		fed["insecure"] = true
	}
	if t := frag.Trust; t != nil {
		tr := section("trust")
		tr["enabled"] = true
		tr["trustDomain"] = t.TrustDomain
		if t.Join.Token != "" {
			if tr["rootDir"] != nil || tr["caDir"] != nil {
				return Hint(fmt.Errorf("--config %s already gives the cluster a CA (trust.rootDir or trust.caDir)", path),
					"give --trust-token=false to keep that CA, or remove it to fetch the intermediate with the token")
			}
			tr["join"] = map[string]any{"url": t.Join.URL, "token": t.Join.Token, "rootKeyID": t.Join.RootKeyID}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	tmp := path + ".join-tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return Hint(fmt.Errorf("--config: %w", err), "give a file you may write")
	}
	if _, err := daemon.LoadConfigFile(tmp); err != nil {
		os.Remove(tmp)
		return Hint(fmt.Errorf("--config %s: merged, it would not load: %w", path, err), "fix the file, then run join again (the token in --dir stays valid until used)")
	}
	return os.Rename(tmp, path)
}

// joinFlags are meridiand's flags equivalent to a fragment.
func joinFlags(f joinFragment) []string {
	out := []string{"--cluster " + f.Cluster.Name, "--federate", "--seeds " + strings.Join(f.Federation.Seeds, ",")}
	if f.Federation.KeyFile != "" {
		out = append(out, "--gossip-key-file "+f.Federation.KeyFile)
	} else {
		out = append(out, "--gossip-insecure")
	}
	if t := f.Trust; t != nil {
		out = append(out, "--trust", "--trust-domain "+t.TrustDomain)
		if t.Join.Token != "" {
			out = append(out, "--trust-join-url "+t.Join.URL, "--trust-join-token "+t.Join.Token, "--trust-join-root-key "+t.Join.RootKeyID)
		}
	}
	return out
}

func printJoinPlan(g *Globals, p JoinPlan) error {
	if g.Output != "table" {
		return printValue(g, p)
	}
	w := g.Out
	fmt.Fprintf(w, "Cluster %s may join the mesh through %s (clusters: %s).\n", p.Cluster, p.Mesh, strings.Join(p.MeshClusters, ", "))
	fmt.Fprintf(w, "  gossip seeds   %s\n", strings.Join(p.Seeds, ", "))
	if p.GossipKeyFile != "" {
		fmt.Fprintf(w, "  gossip keys    %s (the mesh's keyring: keep it secret)\n", p.GossipKeyFile)
	} else {
		fmt.Fprintf(w, "  gossip keys    none (the mesh gossips unencrypted)\n")
	}
	switch {
	case p.Token != "":
		fmt.Fprintf(w, "  trust          %s; single-use join token for its intermediate CA, expires %s; root %.16s pinned\n",
			p.TrustDomain, p.TokenExpires.Format(time.RFC3339), p.RootKeyID)
	case p.TrustDomain != "":
		fmt.Fprintf(w, "  trust          %s; no join token: give the cluster its intermediate (meridianctl trust issue-intermediate, --trust-ca-dir)\n", p.TrustDomain)
	default:
		fmt.Fprintf(w, "  trust          off in the mesh\n")
	}
	fmt.Fprintf(w, "Wrote %s", p.ConfigFragment)
	if p.MergedInto != "" {
		fmt.Fprintf(w, ", and merged it into %s", p.MergedInto)
	}
	fmt.Fprintf(w, ".\nOn another host, copy %s there (the same path, or change federation.keyFile).", p.Dir)
	fmt.Fprintf(w, "\nStart %s's meridiand with that configuration, or with these flags (and its own region and addresses):\n  meridiand %s\n",
		p.Cluster, strings.Join(p.Flags, " \\\n    "))
	if p.Token != "" {
		fmt.Fprintf(w, "It needs a key of its own to seal its CA key (--trust-key-file, or $MERIDIAN_TRUST_KEY).\n")
	}
	fmt.Fprintf(w, "Then check that it joined:\n  meridianctl join --server %s-MERIDIAND:15010 --mesh %s\n", strings.ToUpper(p.Cluster), p.Mesh)
	return nil
}

// JoinCheck is what check found, printed with -o json|yaml.
type JoinCheck struct {
	Cluster     string   `json:"cluster"`
	MeshCluster string   `json:"meshCluster"`
	Joined      bool     `json:"joined"`
	Sees        []string `json:"sees"`
	SeenBy      string   `json:"seenBy"`
	TrustDomain string   `json:"trustDomain,omitempty"`
	SharedRoots []string `json:"sharedRoots,omitempty"`
	Verified    bool     `json:"verified"`
	Missing     string   `json:"missing,omitempty"`
}

func joinCheck(ctx context.Context, g *Globals, o joinOptions) error {
	newConn, err := dialMember(g.Server)
	if err != nil {
		return err
	}
	defer newConn.Close()
	meshConn, err := dialMember(o.mesh)
	if err != nil {
		return err
	}
	defer meshConn.Close()
	deadline := time.Now().Add(o.wait)
	for {
		c, err := checkOnce(ctx, g, o, newConn, meshConn)
		if err != nil {
			return err
		}
		if c.Joined || !time.Now().Before(deadline) {
			if !c.Joined {
				return Hint(fmt.Errorf("cluster %s has not joined after %v: %s", c.Cluster, o.wait, c.Missing),
					"check that the gossip and federation ports are reachable both ways and that both use the same keyring; meridiand's log names refused members")
			}
			return printJoinCheck(g, c)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkOnce looks at the join from both sides once. Errors are for what
// waiting cannot fix (a meridiand unreachable or not federated).
func checkOnce(ctx context.Context, g *Globals, o joinOptions, newConn, meshConn *grpc.ClientConn) (JoinCheck, error) {
	var c JoinCheck
	rctx, cancel := g.Request(ctx)
	defer cancel()
	ns, err := federationpb.NewFederationStatusClient(newConn).GetStatus(rctx, &federationpb.GetStatusRequest{})
	if err != nil {
		return c, memberError(err, "--server", g.Server, g.Timeout)
	}
	ms, err := federationpb.NewFederationStatusClient(meshConn).GetStatus(rctx, &federationpb.GetStatusRequest{})
	if err != nil {
		return c, memberError(err, "--mesh", o.mesh, g.Timeout)
	}
	c.Cluster, c.MeshCluster = ns.GetCluster(), ms.GetCluster()
	if c.Cluster == c.MeshCluster {
		return c, Hint(fmt.Errorf("--server and --mesh are both cluster %s", c.Cluster), "--server is the new cluster's meridiand, --mesh one already in the mesh")
	}
	state := func(st *federationpb.Status, name string) string {
		for _, x := range st.GetClusters() {
			if x.GetName() == name {
				return x.GetState()
			}
		}
		return "unknown"
	}
	var missing []string
	for _, x := range ms.GetClusters() {
		s := state(ns, x.GetName())
		c.Sees = append(c.Sees, x.GetName()+" "+s)
		if x.GetName() != c.Cluster && x.GetState() == "alive" && s != "alive" {
			missing = append(missing, fmt.Sprintf("%s sees %s %s", c.Cluster, x.GetName(), s))
		}
	}
	c.SeenBy = state(ms, c.Cluster)
	if c.SeenBy != "alive" {
		missing = append(missing, fmt.Sprintf("%s sees %s %s", c.MeshCluster, c.Cluster, c.SeenBy))
	}
	c.Verified = true
	for _, m := range ms.GetMembers() {
		if m.GetCluster() == c.Cluster && !m.GetVerified() {
			c.Verified = false
		}
	}

	nb, nerr := trustpb.NewTrustServiceClient(newConn).GetBundle(rctx, &trustpb.GetBundleRequest{})
	mb, merr := trustpb.NewTrustServiceClient(meshConn).GetBundle(rctx, &trustpb.GetBundleRequest{})
	nOff, mOff := status.Code(nerr) == codes.Unimplemented, status.Code(merr) == codes.Unimplemented
	switch {
	case nOff && mOff:
	case nOff || mOff:
		on, off := c.MeshCluster, c.Cluster
		if mOff {
			on, off = off, on
		}
		return c, Hint(fmt.Errorf("trust runs in %s but not in %s", on, off), "a mesh runs trust everywhere or nowhere: start "+off+"'s meridiand with the trust settings join wrote")
	case nerr != nil:
		return c, memberError(nerr, "--server", g.Server, g.Timeout)
	case merr != nil:
		return c, memberError(merr, "--mesh", o.mesh, g.Timeout)
	default:
		nl, ml := localBundle(nb), localBundle(mb)
		if nl == nil || ml == nil || nl.GetTrustDomain() != ml.GetTrustDomain() {
			return c, Hint(fmt.Errorf("%s and %s are in different trust domains (%s, %s)", c.Cluster, c.MeshCluster, nl.GetTrustDomain(), ml.GetTrustDomain()),
				"start the new cluster's meridiand with the mesh's --trust-domain (join writes it)")
		}
		c.TrustDomain = ml.GetTrustDomain()
		nroots, mroots := rootIDs(nl), rootIDs(ml)
		for _, id := range mroots {
			if slices.Contains(nroots, id) {
				c.SharedRoots = append(c.SharedRoots, id)
			}
		}
		if len(c.SharedRoots) == 0 {
			return c, Hint(fmt.Errorf("%s does not trust the mesh's roots (%s trusts %s)", c.Cluster, c.MeshCluster, strings.Join(short(mroots), ", ")),
				"the cluster's CA comes from another root: recreate its data directory and join with a fresh token")
		}
		if !c.Verified {
			missing = append(missing, fmt.Sprintf("%s has not verified %s's member identity yet", c.MeshCluster, c.Cluster))
		}
	}
	c.Missing = strings.Join(missing, "; ")
	c.Joined = len(missing) == 0
	return c, nil
}

func localBundle(r *trustpb.GetBundleResponse) *trustpb.Bundle {
	for _, b := range r.GetBundles() {
		if b.GetLocal() {
			return b
		}
	}
	return nil
}

func rootIDs(b *trustpb.Bundle) []string {
	roots, _ := ca.ParseCertificates([]byte(b.GetRootsPem()))
	var ids []string
	for _, r := range roots {
		ids = append(ids, bundle.KeyID(r))
	}
	return ids
}

func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%.16s", id)
	}
	return out
}

func printJoinCheck(g *Globals, c JoinCheck) error {
	if g.Output != "table" {
		return printValue(g, c)
	}
	fmt.Fprintf(g.Out, "Cluster %s has joined the mesh: %s sees it alive.\n  %s sees: %s\n", c.Cluster, c.MeshCluster, c.Cluster, strings.Join(c.Sees, ", "))
	if c.TrustDomain != "" {
		fmt.Fprintf(g.Out, "  trust: %s, roots %s shared; %s's member identity verified\n", c.TrustDomain, strings.Join(short(c.SharedRoots), ", "), c.Cluster)
	} else {
		fmt.Fprintf(g.Out, "  trust: off in the mesh\n")
	}
	return nil
}

// dialMember connects to a meridiand other than --server's (lazily).
func dialMember(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, Hint(fmt.Errorf("%q: %w", addr, err), "give meridiand's gRPC address as host:port, for example "+DefaultServer)
	}
	return conn, nil
}

// memberError explains a failed call to the meridiand a flag names, as
// Execute explains --server's.
func memberError(err error, flag, addr string, timeout time.Duration) error {
	st := status.Convert(err)
	desc := oneLine(st.Message())
	if _, cause, ok := strings.Cut(desc, "Error while dialing: "); ok {
		desc = strings.TrimSuffix(cause, `"`)
	}
	switch st.Code() {
	case codes.Unavailable:
		return Hint(fmt.Errorf("meridiand at %s (%s) is unavailable: %s", addr, flag, desc), "is meridiand running there? "+flag+" is its gRPC address")
	case codes.DeadlineExceeded:
		return Hint(fmt.Errorf("no answer from meridiand at %s (%s) within %v", addr, flag, timeout), "raise --timeout, or check that "+flag+" is meridiand's gRPC address")
	case codes.Unimplemented:
		return Hint(fmt.Errorf("meridiand at %s (%s) is not federated", addr, flag), "start it with --federate (federation.enabled): only members can join or be joined")
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return Hint(fmt.Errorf("meridiand at %s (%s): %s: %s", addr, flag, st.Code(), desc), "see meridiand's log at "+addr)
}
