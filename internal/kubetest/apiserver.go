package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/store"
)

// SkipEnv is the only way to skip tests that need the API server.
const SkipEnv = "MERIDIAN_SKIP_KUBE"

// AdminUser is the user of Kubeconfig, RESTConfig and Clientset: a member
// of system:masters, which RBAC lets do anything.
const AdminUser = "kubetest-admin"

// Options configure New. The zero value is not usable: Dir is required.
type Options struct {
	// Dir holds everything the server writes: certificates, keys, the
	// kubeconfig, etcd's data and the server's log. The caller removes it.
	Dir string
	// Binary is the kube-apiserver to run; default: what
	// scripts/kube-apiserver.sh prints (it builds the binary when missing).
	Binary string
	// StartTimeout bounds each start, until /readyz answers; default 3m
	// (the machine is shared, and a cold start under load is slow).
	StartTimeout time.Duration
}

// APIServer is a running kube-apiserver on a loopback port, backed by an
// embedded etcd that it owns. Its methods are safe for concurrent use.
type APIServer struct {
	opts    Options
	etcd    *store.Store
	etcdLog *os.File
	port    int
	args    []string
	logPath string
	ca      *ca
	admin   *rest.Config
	kubecfg string
	client  *kubernetes.Clientset

	mu      sync.Mutex // guards proc, exited, stopped
	proc    *exec.Cmd
	exited  chan struct{} // closed when proc has exited
	stopped bool
}

// New starts etcd and kube-apiserver and returns once /readyz answers OK.
// On error everything it started is stopped again.
func New(ctx context.Context, opts Options) (s *APIServer, err error) {
	if opts.Dir == "" {
		return nil, errors.New("kubetest: Options.Dir is required")
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	if opts.Binary == "" {
		if opts.Binary, err = Binary(); err != nil {
			return nil, err
		}
	}
	s = &APIServer{opts: opts, logPath: filepath.Join(opts.Dir, "kube-apiserver.log")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := s.prepare(); err != nil {
		return nil, err
	}
	if s.etcdLog, err = os.Create(filepath.Join(opts.Dir, "etcd.log")); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	s.etcd, err = store.Open(ctx, store.Config{DataDir: filepath.Join(opts.Dir, "etcd")},
		slog.New(slog.NewTextHandler(s.etcdLog, nil)))
	if err != nil {
		return nil, fmt.Errorf("kubetest: start etcd: %w", err)
	}
	s.args = s.flags()
	return s, s.start(ctx)
}

// prepare picks the port and writes certificates, keys and the kubeconfig.
func (s *APIServer) prepare() error {
	var err error
	if s.port, err = testutil.PickPort(); err != nil {
		return fmt.Errorf("kubetest: pick a port: %w", err)
	}
	if s.ca, err = newCA(); err != nil {
		return fmt.Errorf("kubetest: CA: %w", err)
	}
	servingCert, servingKey, err := s.ca.issue("kube-apiserver", nil, true)
	if err != nil {
		return fmt.Errorf("kubetest: serving certificate: %w", err)
	}
	saKey, err := serviceAccountKey()
	if err != nil {
		return fmt.Errorf("kubetest: service-account key: %w", err)
	}
	files := map[string][]byte{"ca.crt": s.ca.certPEM, "serving.crt": servingCert, "serving.key": servingKey, "sa.key": saKey}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.opts.Dir, name), data, 0o600); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	if s.admin, err = s.RESTConfigAs(AdminUser, "system:masters"); err != nil {
		return err
	}
	if s.client, err = kubernetes.NewForConfig(s.admin); err != nil {
		return fmt.Errorf("kubetest: clientset: %w", err)
	}
	s.kubecfg = filepath.Join(s.opts.Dir, "kubeconfig")
	return writeKubeconfig(s.kubecfg, s.admin)
}

// flags are kube-apiserver's arguments: only what a test needs, so that it
// starts fast. Admission is cut to NamespaceLifecycle: the others either
// need controllers that do not run here (ServiceAccount would reject every
// pod, since no controller creates service accounts) or cost start-up time.
func (s *APIServer) flags() []string {
	f := func(name string) string { return filepath.Join(s.opts.Dir, name) }
	return []string{
		"--etcd-servers=" + s.etcd.ClientURL(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.port),
		"--cert-dir=" + f("certs"),
		"--tls-cert-file=" + f("serving.crt"),
		"--tls-private-key-file=" + f("serving.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f("sa.key"),
		"--service-account-signing-key-file=" + f("sa.key"),
		// Dual-stack, so that tests can create dual-stack Services.
		"--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
		"--disable-admission-plugins=" + strings.Join(disabledAdmission, ","),
		"--enable-priority-and-fairness=false",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		// Without it a graceful shutdown waits for open watches to end
		// on their own (30s and a SIGKILL here); with it the server
		// closes them, as a real API server rollout does.
		"--shutdown-watch-termination-grace-period=2s",
	}
}

var disabledAdmission = []string{
	"LimitRanger", "ServiceAccount", "TaintNodesByCondition", "PodSecurity", "Priority",
	"DefaultTolerationSeconds", "DefaultStorageClass", "StorageObjectInUseProtection",
	"PodGroupProtection", "PersistentVolumeClaimResize", "RuntimeClass", "CertificateApproval",
	"CertificateSigning", "ClusterTrustBundleAttest", "CertificateSubjectRestriction",
	"DefaultIngressClass", "PodTopologyLabels", "NodeDeclaredFeatureValidator", "PodResizeValidator",
	"MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy",
	"ValidatingAdmissionWebhook", "ResourceQuota",
}

// start runs the process and waits for /readyz. The log file is appended
// to, so a restart keeps the earlier run's lines.
func (s *APIServer) start(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errors.New("kubetest: server is stopped")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("kubetest: %w", err)
	}
	cmd := exec.Command(s.opts.Binary, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("kubetest: run %s: %w", s.opts.Binary, err)
	}
	exited := make(chan struct{})
	s.proc, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait() // the exit status is in the log; Stop kills on purpose
		logf.Close()
		close(exited)
	}()
	if err := s.waitReady(ctx, exited); err != nil {
		return fmt.Errorf("%w\n--- last lines of %s:\n%s", err, s.logPath, s.LogTail(40))
	}
	return nil
}

func (s *APIServer) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		_, last = s.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("kubetest: kube-apiserver exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("kubetest: kube-apiserver not ready after %v: %w", s.opts.StartTimeout, last)
		case <-tick.C:
		}
	}
}

// stopProcess ends the kube-apiserver process: SIGTERM for a graceful
// shutdown, SIGKILL after 30s.
func (s *APIServer) stopProcess() {
	s.mu.Lock()
	cmd, exited := s.proc, s.exited
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart stops kube-apiserver and starts it again on the same port, with
// the same certificates and the same etcd, so clients reconnect to it as to
// a restarted server. It returns once /readyz answers again.
func (s *APIServer) Restart(ctx context.Context) error {
	s.stopProcess()
	return s.start(ctx)
}

// Halt stops kube-apiserver and leaves etcd running; Resume starts it
// again. Between the two a test can change etcd behind the server's back,
// as writes made while the API server is down.
func (s *APIServer) Halt() { s.stopProcess() }

// Resume starts a halted server; see Halt.
func (s *APIServer) Resume(ctx context.Context) error { return s.start(ctx) }

// Stop ends kube-apiserver, then etcd. It is idempotent.
func (s *APIServer) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stopProcess()
	if s.etcd != nil {
		s.etcd.Close()
	}
	if s.etcdLog != nil {
		s.etcdLog.Close()
	}
}

// URL is the server's https address.
func (s *APIServer) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.port) }

// Kubeconfig is the path of a kubeconfig for the admin user, with one
// context named "kubetest".
func (s *APIServer) Kubeconfig() string { return s.kubecfg }

// RESTConfig returns a new copy of the admin user's client configuration.
// Client-side rate limits are lifted: tests and benchmarks write fast.
func (s *APIServer) RESTConfig() *rest.Config { return rest.CopyConfig(s.admin) }

// Clientset returns a clientset for the admin user.
func (s *APIServer) Clientset() *kubernetes.Clientset { return s.client }

// Etcd returns the client of the server's etcd (keys live under
// "/registry/"), for tests that change state while the server is halted.
func (s *APIServer) Etcd() *clientv3.Client { return s.etcd.Client }

// RESTConfigAs returns a client configuration that authenticates as user
// in groups with a fresh client certificate. RBAC applies to it, so a test
// can check exactly which permissions a component needs.
func (s *APIServer) RESTConfigAs(user string, groups ...string) (*rest.Config, error) {
	cert, key, err := s.ca.issue(user, groups, false)
	if err != nil {
		return nil, fmt.Errorf("kubetest: client certificate for %s: %w", user, err)
	}
	return &rest.Config{
		Host:            s.URL(),
		TLSClientConfig: rest.TLSClientConfig{CAData: s.ca.certPEM, CertData: cert, KeyData: key},
		QPS:             -1, // no client-side rate limit
		UserAgent:       "kubetest/" + user,
	}, nil
}

func writeKubeconfig(path string, c *rest.Config) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: AdminUser}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	return nil
}

// LogPath is the file that holds kube-apiserver's output.
func (s *APIServer) LogPath() string { return s.logPath }

// LogTail returns the last n lines of kube-apiserver's output.
func (s *APIServer) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

var binary = sync.OnceValues(func() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "kube-apiserver.sh"))
	cmd.Stderr = os.Stderr // build progress, when it has to build
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: scripts/kube-apiserver.sh failed (it builds the binary when missing): %w", err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("kubetest: scripts/kube-apiserver.sh printed %q: %w", path, err)
	}
	return path, nil
})

// Binary returns the path of the cached kube-apiserver binary, building it
// with scripts/kube-apiserver.sh when it is missing (about 5 minutes, once).
func Binary() (string, error) { return binary() }

// repoRoot walks up from the working directory (a test runs in its
// package's folder) to the folder that holds scripts/kube-apiserver.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kube-apiserver.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: scripts/kube-apiserver.sh not found above the working directory")
		}
		dir = parent
	}
}
