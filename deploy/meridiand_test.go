package deploy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
)

// TestChartRunsMeridiand starts a real meridiand with the configuration
// the chart renders (only paths and listen addresses moved to the test's)
// against a real kube-apiserver holding the chart's webhook
// configuration: trust starts its CA from the root Secret's files, the
// webhook gets its certificate from it, and meridiand writes the mesh root
// into the configuration's caBundle — what a fresh install does with no
// certificate step.
func TestChartRunsMeridiand(t *testing.T) {
	api := kubetest.Shared(t)
	ctx := t.Context()
	b, err := render(t, "minimal", "--namespace", "chart-run")
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, b)
	const webhook = "meridian-sidecar-injector-chart-run"
	u := find(objs, "MutatingWebhookConfiguration", webhook)
	if u == nil {
		t.Fatal("no webhook configuration in the chart")
	}
	mwcs := api.Clientset().AdmissionregistrationV1().MutatingWebhookConfigurations()
	var mwc admregv1.MutatingWebhookConfiguration
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mwc); err != nil {
		t.Fatal(err)
	}
	if _, err := mwcs.Create(ctx, &mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	text, _, _ := unstructured.NestedString(find(objs, "ConfigMap", "meridiand").Object, "data", "config.yaml")
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The Secrets' mounts, as meridianctl install fills them.
	cfg.Trust.KeyFile = filepath.Join(dir, "key")
	if err := os.WriteFile(cfg.Trust.KeyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Trust.RootDir = filepath.Join(dir, "root")
	if _, err := service.InitRootDir(cfg.Trust.RootDir, ca.RootOptions{TrustDomain: spiffeid.RequireTrustDomainFromString(cfg.Trust.TrustDomain)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.GRPCAddr, cfg.AdminAddr, cfg.Inject.Addr, cfg.Trust.CAAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "-"
	cfg.Kube.Kubeconfig = api.Kubeconfig()
	d, err := daemon.New(ctx, cfg, daemon.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("meridiand: %v", err)
		}
	}()
	testutil.Eventually(t, time.Minute, func() error {
		got, err := mwcs.Get(ctx, webhook, metav1.GetOptions{})
		if err != nil {
			return err
		}
		roots, err := ca.ParseCertificates(got.Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			return fmt.Errorf("caBundle: %w", err)
		}
		if roots[0].URIs[0].String() != "spiffe://"+cfg.Trust.TrustDomain {
			return fmt.Errorf("caBundle holds %v; want the mesh root", roots[0].URIs)
		}
		return nil
	})
	testutil.Eventually(t, time.Minute, func() error {
		resp, err := http.Get("http://" + d.AdminAddr() + "/readyz?verbose")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}
