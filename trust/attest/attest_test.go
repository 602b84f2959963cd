package attest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func wantRefusal(t *testing.T, err error, reason string) {
	t.Helper()
	r, ok := errors.AsType[*trust.RefusedError](err)
	if !ok || r.Reason != reason {
		t.Fatalf("got %v, want refusal %q", err, reason)
	}
	if !strings.HasPrefix(err.Error(), "attest: ") {
		t.Fatalf("error without package prefix: %v", err)
	}
}

func TestJoinTokens(t *testing.T) {
	ctx := context.Background()
	cli := trusttest.Etcd(t)
	reg := prometheus.NewRegistry()
	now := time.Now()
	clock := func() time.Time { return now }
	jt := attest.NewJoinTokens(attest.JoinTokensConfig{Client: cli, Prefix: "/meridian/trust", Registerer: reg, Now: func() time.Time { return clock() }})
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/vm/sa/billing")

	tok, exp, err := jt.Create(ctx, id, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !attest.IsJoinToken(tok) || !exp.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("token %q expires %v", tok, exp)
	}
	// etcd holds only the token's hash.
	resp, _ := cli.Get(ctx, "/meridian/trust/join-tokens/", clientv3.WithPrefix())
	if len(resp.Kvs) != 1 || strings.Contains(string(resp.Kvs[0].Key)+string(resp.Kvs[0].Value), tok[5:]) {
		t.Fatalf("token stored in the clear or not at all: %v", resp.Kvs)
	}

	got, err := jt.Redeem(ctx, tok)
	if err != nil || got != id {
		t.Fatalf("redeem: %v %v", got, err)
	}
	_, err = jt.Redeem(ctx, tok)
	wantRefusal(t, err, attest.ReasonReplayed)

	forged := "mjt1." + strings.Repeat("A", 43)
	_, err = jt.Redeem(ctx, forged)
	wantRefusal(t, err, attest.ReasonForged)
	for _, bad := range []string{"", "mjt1.", "mjt1.short", "eyJhbGciOi.x.y", tok + "A", strings.Repeat("x", 100000)} {
		_, err = jt.Redeem(ctx, bad)
		wantRefusal(t, err, attest.ReasonMalformed)
	}

	tok2, _, _ := jt.Create(ctx, id, time.Minute)
	clock = func() time.Time { return now.Add(2 * time.Minute) }
	_, err = jt.Redeem(ctx, tok2)
	wantRefusal(t, err, attest.ReasonExpired)

	for reason, n := range map[string]float64{attest.ReasonReplayed: 1, attest.ReasonForged: 1, attest.ReasonMalformed: 6, attest.ReasonExpired: 1} {
		if got := trusttest.Count(t, reg, "meridian_trust_attestation_refused_total", "method", "join_token", "reason", reason); got != n {
			t.Errorf("%s counted %v, want %v", reason, got, n)
		}
	}

	for _, ttl := range []time.Duration{-time.Second, 8 * 24 * time.Hour} {
		if _, _, err := jt.Create(ctx, id, ttl); err == nil {
			t.Errorf("TTL %v accepted", ttl)
		}
	}
	if _, _, err := jt.Create(ctx, trusttest.TD.ID(), 0); err == nil {
		t.Error("token for a bare trust domain accepted")
	}
}

// Many callers racing with one token: exactly one wins.
func TestJoinTokenRedeemedOnce(t *testing.T) {
	ctx := context.Background()
	jt := attest.NewJoinTokens(attest.JoinTokensConfig{Client: trusttest.Etcd(t), Prefix: "/t"})
	tok, _, err := jt.Create(ctx, spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, replays := 0, 0
	for range 16 {
		wg.Go(func() {
			_, err := jt.Redeem(ctx, tok)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if r, ok := errors.AsType[*trust.RefusedError](err); ok && r.Reason == attest.ReasonReplayed {
				replays++
			} else {
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || replays != 15 {
		t.Fatalf("%d wins, %d replays", wins, replays)
	}
}

type fakeReviewer authnv1.TokenReviewStatus

func (f fakeReviewer) Review(context.Context, string, []string) (authnv1.TokenReviewStatus, error) {
	return authnv1.TokenReviewStatus(f), nil
}

// The parts of the reviewer's answer a real API server does not easily
// produce on demand.
func TestKubeRefusalsFromReview(t *testing.T) {
	for name, tc := range map[string]struct {
		st     authnv1.TokenReviewStatus
		reason string
	}{
		"user token":      {authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"meridian"}, User: authnv1.UserInfo{Username: "alice"}}, attest.ReasonNotServiceAccount},
		"other audience":  {authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"vault"}, User: authnv1.UserInfo{Username: "system:serviceaccount:a:b"}}, attest.ReasonAudience},
		"bad sa name":     {authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"meridian"}, User: authnv1.UserInfo{Username: "system:serviceaccount:a/b:c"}}, attest.ReasonTrustDomain},
		"unauthenticated": {authnv1.TokenReviewStatus{Error: "invalid bearer token"}, attest.ReasonUnauthenticated},
	} {
		t.Run(name, func(t *testing.T) {
			k := attest.NewKube(attest.KubeConfig{Reviewer: fakeReviewer(tc.st), TrustDomain: trusttest.TD})
			_, err := k.Attest(context.Background(), "token")
			wantRefusal(t, err, tc.reason)
		})
	}
}

// Real projected service-account tokens, reviewed by a real kube-apiserver.
func TestKubeAttestWithAPIServer(t *testing.T) {
	ctx := context.Background()
	api := kubetest.Shared(t)
	cs := api.Clientset()
	ns := "attest-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:20]
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa, aud string) string {
		t.Helper()
		cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		exp := int64(600)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{aud}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reg := prometheus.NewRegistry()
	k := attest.NewKube(attest.KubeConfig{Reviewer: attest.NewTokenReviewer(cs), TrustDomain: trusttest.TD, Registerer: reg})

	id, err := k.Attest(ctx, token("web", "meridian"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://mesh.test/ns/" + ns + "/sa/web"; id.String() != want {
		t.Fatalf("attested %s, want %s", id, want)
	}
	_, err = k.Attest(ctx, token("web", "https://kubernetes.default.svc.cluster.local"))
	wantRefusal(t, err, attest.ReasonAudience)
	_, err = k.Attest(ctx, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	wantRefusal(t, err, attest.ReasonUnauthenticated)
	_, err = k.Attest(ctx, "")
	wantRefusal(t, err, attest.ReasonMalformed)
	if n := trusttest.Count(t, reg, "meridian_trust_attestation_refused_total", "method", "k8s_sat"); n != 3 {
		t.Errorf("%v refusals counted, want 3", n)
	}
}
