package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/store"
)

func TestEmbeddedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Config{DataDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.Put(ctx, s.Key("policies", "a"), "v1"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.ClientURL(), "http://127.0.0.1:") {
		t.Fatalf("client URL %q", s.ClientURL())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s, err = store.Open(ctx, store.Config{DataDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.Client.Get(ctx, "/meridian/policies/a")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart: %+v, %v", resp, err)
	}
}

func TestExternalUnreachableFailsClearly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := store.Open(ctx, store.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("unreachable etcd: %v", err)
	}
}

func TestExternalEndpoint(t *testing.T) {
	ctx := context.Background()
	server, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	// A second client, as another replica of the cluster would connect.
	client, err := store.Open(ctx, store.Config{Endpoints: []string{server.ClientURL()}, Prefix: "/other/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if client.ClientURL() != "" {
		t.Fatal("an external store reports an embedded URL")
	}
	if _, err := client.Client.Put(ctx, client.Key("x"), "1"); err != nil {
		t.Fatal(err)
	}
	resp, err := server.Client.Get(ctx, "/other/x")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("write through the external client not visible: %v", err)
	}
}

func TestEmbeddedNeedsDataDir(t *testing.T) {
	if _, err := store.Open(context.Background(), store.Config{}, nil); err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("no data dir: %v", err)
	}
}
