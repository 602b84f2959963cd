package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/trust/ca"
)

// Defaults of Config.
const (
	// DefaultCertTTL is the serving certificate's lifetime; it is renewed
	// at half of it.
	DefaultCertTTL = 24 * time.Hour
	// maxReviewBytes bounds a request body: the API server's own limit on
	// an object is 3 MiB, and a review carries it once.
	maxReviewBytes = 6 << 20
)

// Config configures New.
type Config struct {
	// Settings from meridiand's configuration; validated by New.
	Settings Settings
	// Cluster is this control plane's cluster, passed to every sidecar.
	Cluster string
	// ServerID is meridiand's member SPIFFE ID, which every sidecar
	// verifies on the TLS xDS port. Required.
	ServerID spiffeid.ID
	// CA signs the serving certificate. Required.
	CA CASource
	// Roots returns the mesh's current roots, put on every injected pod
	// for its sidecar to verify meridiand with; the trust component's
	// bundle, so that a pod admitted during a root rotation gets the new
	// root at once. Nil: the caBundle's roots, as of the serving
	// certificate's last renewal.
	Roots func() []*x509.Certificate
	// Kube, when set with Settings.WebhookName, is used to keep that
	// MutatingWebhookConfiguration's caBundle current.
	Kube kubernetes.Interface
	// CertTTL of the serving certificate; default DefaultCertTTL.
	CertTTL time.Duration
	// Logger and Metrics are required by the project's rules; nil falls
	// back to a discarding logger and no metrics.
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Server is the sidecar-injection webhook: an HTTPS server on
// Settings.Addr answering AdmissionReviews on /inject.
type Server struct {
	cfg     Config
	log     *slog.Logger
	lis     net.Listener
	srv     *http.Server
	cert    atomic.Pointer[tls.Certificate]
	bundle  atomic.Pointer[[]byte] // caBundle the webhook configuration should carry
	patched atomic.Bool            // the configuration carries it

	reviews *prometheus.CounterVec
	expiry  prometheus.Gauge

	closeOnce sync.Once
}

// Review results, the values of meridian_inject_reviews_total{result}.
const (
	resultInjected  = "injected"
	resultSkipped   = "skipped"
	resultDenied    = "denied"
	resultMalformed = "malformed"
)

// New validates cfg, issues the first serving certificate from the mesh CA
// and listens, so that Addr is known before Run.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if errs := cfg.Settings.Validate(field.NewPath("inject")); len(errs) > 0 {
		return nil, fmt.Errorf("inject: %w", errs.ToAggregate())
	}
	if cfg.CA == nil {
		return nil, errors.New("inject: Config.CA is required")
	}
	if cfg.ServerID.IsZero() {
		return nil, errors.New("inject: Config.ServerID is required: sidecars verify meridiand's certificate by it")
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = DefaultCertTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "inject")}
	s.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_inject_reviews_total",
		Help: "Admission reviews answered by the sidecar-injection webhook, by result (injected, skipped, denied, malformed).",
	}, []string{"result"})
	s.expiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meridian_inject_certificate_expiry_timestamp_seconds",
		Help: "When the injection webhook's serving certificate expires (Unix seconds); it is renewed at half-life.",
	})
	for _, r := range []string{resultInjected, resultSkipped, resultDenied, resultMalformed} {
		s.reviews.WithLabelValues(r)
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.reviews, s.expiry} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("inject: metrics: %w", err)
			}
		}
	}
	if err := s.renew(ctx); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Settings.Addr)
	if err != nil {
		return nil, fmt.Errorf("inject: addr: %w", err)
	}
	s.lis = lis
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Addr is the address the webhook listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// CABundle is the PEM the webhook configuration's caBundle must hold.
func (s *Server) CABundle() []byte { return *s.bundle.Load() }

// Ready reports whether the API server can call the webhook: it is always
// serving once Run runs, and the caBundle must be in place when the server
// keeps it current.
func (s *Server) Ready(context.Context) error {
	if s.managesBundle() && !s.patched.Load() {
		return fmt.Errorf("the caBundle of MutatingWebhookConfiguration %s is not current yet", s.cfg.Settings.WebhookName)
	}
	return nil
}

func (s *Server) managesBundle() bool { return s.cfg.Kube != nil && s.cfg.Settings.WebhookName != "" }

// Run serves until ctx ends, renewing the certificate at half-life and
// keeping the webhook configuration's caBundle current, then shuts the
// server down.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.lis, "", "") }()
	retry := time.Second
	for {
		wait := time.Until(halfLife(s.cert.Load().Leaf))
		if s.managesBundle() && !s.patched.Load() {
			if err := s.patchBundle(ctx); err != nil {
				s.log.Warn("cannot update the webhook's caBundle; retrying", "webhook", s.cfg.Settings.WebhookName, "in", retry, "err", err)
				wait = min(wait, retry)
				retry = min(2*retry, 30*time.Second)
			} else {
				retry = time.Second
			}
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return s.shutdown(errc)
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("inject: serve: %w", err)
		case <-t.C:
		}
		if time.Now().After(halfLife(s.cert.Load().Leaf)) {
			if err := s.renew(ctx); err != nil {
				s.log.Warn("cannot renew the serving certificate; the current one stays", "err", err)
			}
		}
	}
}

func (s *Server) shutdown(errc <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("inject: serve: %w", err)
	}
	return nil
}

// Close stops listening, for a server whose Run was never called. It is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.lis.Close() }) // already closed after Run: nothing to report
	return nil
}

// halfLife is when a certificate is renewed.
func halfLife(c *x509.Certificate) time.Time { return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2) }

// renew issues a serving certificate from the CA's current material.
func (s *Server) renew(ctx context.Context) error {
	c, err := s.cfg.CA(ctx)
	if err != nil {
		return err
	}
	cert, err := issueServing(c, s.cfg.Settings.Hosts, s.cfg.CertTTL, time.Now())
	if err != nil {
		return err
	}
	bundle := ca.EncodeCertificates(c.Roots...)
	if old := s.bundle.Load(); old == nil || !bytes.Equal(*old, bundle) {
		s.bundle.Store(&bundle)
		s.patched.Store(false)
	}
	s.cert.Store(cert)
	s.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	s.log.Info("serving certificate issued by the mesh CA", "hosts", s.cfg.Settings.Hosts, "notAfter", cert.Leaf.NotAfter, "issuer", cert.Leaf.Issuer.String())
	return nil
}

// patchBundle writes the caBundle into every webhook of the configuration
// that does not carry it yet.
func (s *Server) patchBundle(ctx context.Context) error {
	name, bundle := s.cfg.Settings.WebhookName, s.CABundle()
	api := s.cfg.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	mwc, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("inject: get webhook configuration: %w", err)
	}
	var ops []patchOp
	for i, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			// A test op first: the index still names the same webhook.
			ops = append(ops, patchOp{"test", fmt.Sprintf("/webhooks/%d/name", i), w.Name},
				patchOp{"add", fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), bundle})
		}
	}
	if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			return fmt.Errorf("inject: encode patch: %w", err)
		}
		if _, err := api.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "meridiand"}); err != nil {
			return fmt.Errorf("inject: patch webhook configuration: %w", err)
		}
		s.log.Info("webhook caBundle updated", "webhook", name, "webhooks", len(ops)/2)
	}
	s.patched.Store(true)
	return nil
}

// roots is the PEM of the mesh roots for a pod: Config.Roots when it has
// any, else the caBundle's.
func (s *Server) roots() []byte {
	if s.cfg.Roots != nil {
		if r := s.cfg.Roots(); len(r) > 0 {
			return ca.EncodeCertificates(r...)
		}
	}
	return s.CABundle()
}

// Handler serves POST /inject. It is exported for tests of malformed
// input; Run serves it over TLS.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /inject", s.serveInject)
	return mux
}

func (s *Server) serveInject(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		s.malformed(w, http.StatusUnsupportedMediaType, fmt.Errorf("inject: Content-Type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		s.malformed(w, http.StatusRequestEntityTooLarge, fmt.Errorf("inject: read AdmissionReview: %w", err))
		return
	}
	review, err := decodeReview(body)
	if err != nil {
		s.malformed(w, http.StatusBadRequest, err)
		return
	}
	review.Response = s.admit(review.Request)
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		s.log.Debug("writing AdmissionReview response", "err", err)
	}
}

// malformed answers a request that is not an AdmissionReview at all: the
// API server logs the body, so it names what is wrong.
func (s *Server) malformed(w http.ResponseWriter, code int, err error) {
	s.reviews.WithLabelValues(resultMalformed).Inc()
	s.log.Warn("malformed admission request", "err", err)
	http.Error(w, err.Error(), code)
}

// decodeReview checks that body is an admission.k8s.io/v1 AdmissionReview
// carrying a request.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("inject: decode AdmissionReview: %w", err)
	}
	if gvk := review.GroupVersionKind(); gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return nil, fmt.Errorf("inject: apiVersion %q, kind %q: want admission.k8s.io/v1 AdmissionReview", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("inject: request: Required value: an AdmissionReview to answer carries a request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("inject: request.uid: Required value")
	}
	return &review, nil
}

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// admit answers one admission request. Anything but the creation of a Pod
// is allowed untouched (the webhook's rules should not send it).
func (s *Server) admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind != podKind || req.Operation != admissionv1.Create || req.SubResource != "" {
		s.reviews.WithLabelValues(resultSkipped).Inc()
		return resp
	}
	name := req.Name
	var pod corev1.Pod
	err := json.Unmarshal(req.Object.Raw, &pod)
	var dec Decision
	if err == nil {
		if name == "" {
			name = pod.GenerateName + "*"
		}
		dec, err = Mutate(&pod, &s.cfg.Settings, Mesh{Cluster: s.cfg.Cluster, ServerID: s.cfg.ServerID, Roots: s.roots()})
	} else {
		err = fmt.Errorf("request.object: not a Pod: %w", err)
	}
	log := s.log.With("namespace", req.Namespace, "pod", name)
	switch {
	case err != nil:
		s.reviews.WithLabelValues(resultDenied).Inc()
		log.Warn("pod denied: it cannot be injected", "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
			Message: "meridian sidecar injection: " + err.Error()}
	case dec.Patch == nil:
		s.reviews.WithLabelValues(resultSkipped).Inc()
		log.Debug("pod not injected", "reason", dec.Skipped)
	default:
		s.reviews.WithLabelValues(resultInjected).Inc()
		log.Debug("pod injected")
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = dec.Patch, &pt
	}
	return resp
}
