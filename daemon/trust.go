package daemon

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
	"github.com/meridian-mesh/meridian/trust/workloadapi"
)

// Trust configures the mesh's identities (package trust/service): this
// cluster's CA, the SVIDs it hands out over SDS, the CA service and the
// SPIFFE Workload API.
type Trust struct {
	// Enabled runs the trust component. Off by default, so that a lab
	// without a CA still starts.
	Enabled bool `json:"enabled,omitempty"`
	// TrustDomain of the mesh; default "cluster.local" (as Istio's).
	TrustDomain string `json:"trustDomain,omitempty"`
	// KeyFile holds the key that seals CA keys in etcd (base64 of 32
	// bytes); default $MERIDIAN_TRUST_KEY or $MERIDIAN_TRUST_KEY_FILE.
	KeyFile string `json:"keyFile,omitempty"`
	// First start only (etcd holds no CA yet), one of: RootDir (this
	// cluster holds the root: `meridianctl trust init`), CADir (this
	// cluster's intermediate: `meridianctl trust issue-intermediate`), or
	// Join (ask the root holder's CA service).
	RootDir string    `json:"rootDir,omitempty"`
	CADir   string    `json:"caDir,omitempty"`
	Join    TrustJoin `json:"join,omitzero"`
	// CAAddr is where the CA service and the SPIFFE bundle endpoint listen
	// (TLS); default :15012, "-" for nowhere.
	CAAddr string `json:"caAddr,omitempty"`
	// SVIDTTL of the SVIDs this control plane mints; default 1h.
	SVIDTTL metav1.Duration `json:"svidTTL,omitzero"`
	// WorkloadSocket serves the SPIFFE Workload API on this Unix socket to
	// the local processes Workloads select.
	WorkloadSocket string          `json:"workloadSocket,omitempty"`
	Workloads      []TrustWorkload `json:"workloads,omitempty"`
}

// TrustJoin is how a new cluster gets its intermediate online, with what
// `meridianctl trust join-token --cluster NAME` printed on the root holder.
type TrustJoin struct {
	URL       string `json:"url,omitempty"`
	Token     string `json:"token,omitempty"`
	RootKeyID string `json:"rootKeyID,omitempty"`
}

func (j TrustJoin) set() bool { return j != TrustJoin{} }

// TrustWorkload gives local processes an identity on the Workload API
// socket: every selector set must match the connecting process.
type TrustWorkload struct {
	SPIFFEID string  `json:"spiffeID"`
	UID      *uint32 `json:"uid,omitempty"`
	GID      *uint32 `json:"gid,omitempty"`
	Exe      string  `json:"exe,omitempty"`
}

var trustFlags = map[string]string{
	"trust.enabled":        "--trust",
	"trust.trustDomain":    "--trust-domain",
	"trust.keyFile":        "--trust-key-file",
	"trust.rootDir":        "--trust-root-dir",
	"trust.caDir":          "--trust-ca-dir",
	"trust.join":           "--trust-join-url",
	"trust.join.url":       "--trust-join-url",
	"trust.join.token":     "--trust-join-token",
	"trust.join.rootKeyID": "--trust-join-root-key",
	"trust.caAddr":         "--trust-ca-addr",
	"trust.svidTTL":        "--svid-ttl",
	"trust.workloadSocket": "--workload-api-socket",
}

func (c *Trust) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Enabled, "trust", c.Enabled, "run this cluster's CA: SVIDs over SDS, the CA service, the Workload API")
	fs.StringVar(&c.TrustDomain, "trust-domain", c.TrustDomain, "trust domain of the mesh (default cluster.local)")
	fs.StringVar(&c.KeyFile, "trust-key-file", c.KeyFile, "file with the key sealing CA keys in etcd (default $MERIDIAN_TRUST_KEY, $MERIDIAN_TRUST_KEY_FILE)")
	fs.StringVar(&c.RootDir, "trust-root-dir", c.RootDir, "first start of the root holder: directory from meridianctl trust init")
	fs.StringVar(&c.CADir, "trust-ca-dir", c.CADir, "first start: this cluster's directory from meridianctl trust issue-intermediate")
	fs.StringVar(&c.Join.URL, "trust-join-url", c.Join.URL, "first start: the root holder's CA service URL (with --trust-join-token and --trust-join-root-key)")
	fs.StringVar(&c.Join.Token, "trust-join-token", c.Join.Token, "first start: join token from meridianctl trust join-token --cluster")
	fs.StringVar(&c.Join.RootKeyID, "trust-join-root-key", c.Join.RootKeyID, "first start: the root key ID to pin, printed with the join token")
	fs.StringVar(&c.CAAddr, "trust-ca-addr", c.CAAddr, "host:port of the CA service and bundle endpoint (default :15012, - for none)")
	fs.DurationVar(&c.SVIDTTL.Duration, "svid-ttl", c.SVIDTTL.Duration, "lifetime of the SVIDs this control plane mints (rotated at half)")
	fs.StringVar(&c.WorkloadSocket, "workload-api-socket", c.WorkloadSocket, "Unix socket of the SPIFFE Workload API for local processes")
}

func (c *Trust) validate(path *field.Path) field.ErrorList {
	if !c.Enabled {
		return nil
	}
	var errs field.ErrorList
	if c.TrustDomain != "" {
		if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
			errs = append(errs, field.Invalid(path.Child("trustDomain"), c.TrustDomain, err.Error()))
		}
	}
	if c.CAAddr != "" && c.CAAddr != "-" {
		errs = append(errs, validateListen(c.CAAddr, path.Child("caAddr"))...)
	}
	if j := c.Join; j.set() && (j.URL == "" || j.Token == "" || j.RootKeyID == "") {
		errs = append(errs, field.Required(path.Child("join"), "a join needs the CA service URL, the token and the root key ID"))
	}
	if c.SVIDTTL.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("svidTTL"), c.SVIDTTL.Duration.String(), "must not be negative"))
	}
	for i, w := range c.Workloads {
		p := path.Child("workloads").Index(i)
		if _, err := spiffeid.FromString(w.SPIFFEID); err != nil {
			errs = append(errs, field.Invalid(p.Child("spiffeID"), w.SPIFFEID, err.Error()))
		}
		if w.UID == nil && w.GID == nil && w.Exe == "" {
			errs = append(errs, field.Required(p, "a uid, gid or exe selector: a registration without one would match nothing"))
		}
	}
	return errs
}

// wireTrust runs the trust component: its admin service on the shared
// gRPC server (meridianctl trust), its CA service and Workload API on
// their own listeners. Components that need identities use d.Trust.
func wireTrust(ctx context.Context, d *Daemon) error {
	c := d.Config.Trust
	if !c.Enabled {
		return nil
	}
	sealer, err := ca.LoadSealer(c.KeyFile)
	if err != nil {
		return err
	}
	tdName := c.TrustDomain
	if tdName == "" {
		tdName = "cluster.local"
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return fmt.Errorf("trust.trustDomain: %w", err)
	}
	var kc kubernetes.Interface
	if d.Config.Kube.Enabled {
		rc, err := kube.LoadRESTConfig(d.Config.Kube.Kubeconfig, d.Config.Kube.Context)
		if err != nil {
			return err
		}
		if kc, err = kubernetes.NewForConfig(rc); err != nil {
			return fmt.Errorf("trust: %w", err)
		}
	}
	var regs []workloadapi.Registration
	for _, w := range c.Workloads {
		id, err := spiffeid.FromString(w.SPIFFEID)
		if err != nil {
			return fmt.Errorf("trust.workloads: %w", err)
		}
		regs = append(regs, workloadapi.Registration{ID: id, UID: w.UID, GID: w.GID, Exe: w.Exe})
	}
	var join *service.Join
	if c.Join.set() {
		join = &service.Join{URL: c.Join.URL, Token: c.Join.Token, RootKeyID: c.Join.RootKeyID}
	}
	svc, err := service.New(ctx, service.Config{
		TrustDomain: td, Cluster: d.Config.Cluster.Name, Etcd: d.Store.Client, Prefix: d.Store.Key("trust"), Sealer: sealer,
		RootDir: c.RootDir, CADir: c.CADir, Join: join, SVIDTTL: c.SVIDTTL.Duration, Kube: kc,
		ListenAddr: c.CAAddr, WorkloadSocket: c.WorkloadSocket, Registrations: regs,
		Logger: d.Log, Registerer: d.Metrics,
	})
	if err != nil {
		return err
	}
	d.Trust = svc
	svc.RegisterGRPC(d.GRPC)
	d.Go("trust", svc.Run)
	d.OnClose(svc.Close)
	return nil
}
