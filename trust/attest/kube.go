package attest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/trust"
)

// DefaultAudience is the audience a workload's projected service-account
// token must carry for Meridian (serviceAccountToken.audience in the pod
// spec). A token for another audience (the API server's own, say) is
// refused, so that a token handed to some other service cannot be replayed
// here.
const DefaultAudience = "meridian"

// MaxTokenSize bounds a service-account token before it is sent to the API
// server.
const MaxTokenSize = 16 << 10

// TokenReviewer asks Kubernetes whether a token is valid. The client-go
// implementation is NewTokenReviewer; tests of pure code may use a fake.
// It may be called concurrently and may block on the network.
type TokenReviewer interface {
	Review(ctx context.Context, token string, audiences []string) (authnv1.TokenReviewStatus, error)
}

type clientReviewer struct{ client kubernetes.Interface }

// NewTokenReviewer reviews tokens with the TokenReview API through
// client-go. The client needs create on tokenreviews.authentication.k8s.io
// (the system:auth-delegator ClusterRole grants it).
func NewTokenReviewer(client kubernetes.Interface) TokenReviewer { return clientReviewer{client} }

func (r clientReviewer) Review(ctx context.Context, token string, audiences []string) (authnv1.TokenReviewStatus, error) {
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.TokenReviewStatus{}, err
	}
	return tr.Status, nil
}

// Refusal reasons of Kubernetes attestation.
const (
	ReasonUnauthenticated   = "unauthenticated"     // the API server did not authenticate the token
	ReasonAudience          = "audience"            // valid, but not for Meridian's audience
	ReasonNotServiceAccount = "not_service_account" // a user's token, not a service account's
	ReasonTrustDomain       = "trust_domain"        // the namespace or name does not make a valid ID
)

// Kube attests workloads by their projected service-account token: the
// token is reviewed by the API server, and the service account it
// authenticates becomes spiffe://TD/ns/NAMESPACE/sa/NAME.
type Kube struct {
	reviewer  TokenReviewer
	td        spiffeid.TrustDomain
	audiences []string
	refused   *prometheus.CounterVec
}

// KubeConfig configures NewKube.
type KubeConfig struct {
	Reviewer    TokenReviewer        // required
	TrustDomain spiffeid.TrustDomain // required
	// Audiences the token must carry one of; default [DefaultAudience].
	Audiences  []string
	Registerer prometheus.Registerer // meridian_trust_attestation_refused_total{method="k8s_sat"}
}

// NewKube returns a Kubernetes attestor.
func NewKube(cfg KubeConfig) *Kube {
	aud := cfg.Audiences
	if len(aud) == 0 {
		aud = []string{DefaultAudience}
	}
	return &Kube{reviewer: cfg.Reviewer, td: cfg.TrustDomain, audiences: aud, refused: refusedCounter(cfg.Registerer)}
}

// Attest returns the SPIFFE ID of the service account whose token this is.
// Refusals are *trust.RefusedError, counted; an API server that cannot be
// reached is a plain error (the caller may retry).
func (k *Kube) Attest(ctx context.Context, token string) (spiffeid.ID, error) {
	id, err := k.attest(ctx, token)
	if r, ok := errors.AsType[*trust.RefusedError](err); ok {
		k.refused.WithLabelValues("k8s_sat", r.Reason).Inc()
	}
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("attest: service-account token: %w", err)
	}
	return id, nil
}

func (k *Kube) attest(ctx context.Context, token string) (spiffeid.ID, error) {
	if token == "" || len(token) > MaxTokenSize {
		return spiffeid.ID{}, trust.Refuse(ReasonMalformed, "token of %d bytes (want 1..%d)", len(token), MaxTokenSize)
	}
	st, err := k.reviewer.Review(ctx, token, k.audiences)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("token review: %w", err)
	}
	if !st.Authenticated {
		if strings.Contains(st.Error, "audience") {
			return spiffeid.ID{}, trust.Refuse(ReasonAudience, "the API server refused the token for audiences %v: %s", k.audiences, st.Error)
		}
		return spiffeid.ID{}, trust.Refuse(ReasonUnauthenticated, "the API server refused the token: %s", st.Error)
	}
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(k.audiences, a) }) {
		return spiffeid.ID{}, trust.Refuse(ReasonAudience, "token audiences %v, want one of %v", st.Audiences, k.audiences)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return spiffeid.ID{}, trust.Refuse(ReasonNotServiceAccount, "token of %q, not of a service account", st.User.Username)
	}
	id, err := trust.WorkloadID(k.td, ns, sa)
	if err != nil {
		return spiffeid.ID{}, trust.Refuse(ReasonTrustDomain, "%v", err)
	}
	return id, nil
}
