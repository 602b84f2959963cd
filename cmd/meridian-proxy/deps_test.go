package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/meridian-mesh/meridian/"

// forbidden reports why the proxy must not link a package, or "". The
// proxy's resident memory follows its binary's size (its code pages are
// file-backed and touched), so the control plane — its API types, registry,
// locality engine, stores and Kubernetes machinery — stays out of it: the
// proxy gets everything it needs as decoded xDS (issue 7).
func forbidden(pkg string) string {
	for _, p := range []string{"k8s.io/", "sigs.k8s.io/", "go.etcd.io/", "github.com/hashicorp/memberlist"} {
		if strings.HasPrefix(pkg, p) {
			return "Kubernetes, etcd and gossip libraries belong to the control plane"
		}
	}
	switch pkg {
	case "text/template", "html/template":
		// It calls methods by a name known only at run time, so the
		// linker keeps every exported method of every linked type: 8 MB
		// of binary, all resident. grpc's x/net/trace (without the
		// grpcnotrace tag) and command frameworks bring it in.
		return "templates disable the linker's dead-method elimination"
	case "github.com/spf13/cobra":
		return "a command framework for one command (it links text/template)"
	}
	rel, ok := strings.CutPrefix(pkg, module)
	if !ok {
		return ""
	}
	if rel == "locality/priority" {
		return "" // the priority-load arithmetic, stdlib only, shared on purpose
	}
	for _, p := range []string{
		"api", "registry", "locality", "daemon", "discovery", "federation", "store", "xds",
		"policyapi", "ui", "inject", "deploy", "lab", "meridianctl", "cmd/meridianctl", "cmd/meridiand",
		"trust/ca", "trust/authz", "trust/service",
	} {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return "a control-plane package"
		}
	}
	return ""
}

// TestNoControlPlaneDependencies fails when meridian-proxy, built as it
// ships (-tags=grpcnotrace, see the Makefile), links a package it must not,
// and shows the import chain that brought it in.
func TestNoControlPlaneDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags=grpcnotrace", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	var pkgs []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkgs = append(pkgs, f[0])
		imports[f[0]] = f[1:]
	}
	main := module + "cmd/meridian-proxy"
	if !slices.Contains(pkgs, main) || !slices.Contains(pkgs, module+"sidecar") {
		t.Fatalf("go list -deps did not list the proxy and package sidecar: %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		if why := forbidden(p); why != "" {
			t.Errorf("meridian-proxy links %s (%s): %s", p, why, strings.Join(chain(imports, main, p), " → "))
		}
	}
}

// chain is a shortest import path from one package to another.
func chain(imports map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{to}
}

// The check itself must catch what it is for.
func TestForbidden(t *testing.T) {
	for pkg, bad := range map[string]bool{
		"k8s.io/apimachinery/pkg/apis/meta/v1": true,
		"sigs.k8s.io/yaml":                     true,
		module + "registry":                    true,
		module + "locality":                    true,
		module + "locality/priority":           false,
		module + "api/v1alpha1":                true,
		module + "daemon":                      true,
		module + "xds/translate":               true,
		module + "trust/authz":                 true,
		module + "trust/jwt":                   false,
		module + "sidecar/lb":                  false,
		module + "registryx":                   false,
		"text/template":                        true,
		"github.com/spf13/pflag":               false,
		"github.com/envoyproxy/go-control-plane/envoy/config/core/v3": false,
	} {
		if got := forbidden(pkg) != ""; got != bad {
			t.Errorf("forbidden(%s) = %v, want %v", pkg, got, bad)
		}
	}
}

// TestNoGeneratedValidators builds the proxy as it ships and fails when
// the validators protoc-gen-validate generates for Envoy's types are in it:
// one call through an interface keeps them all (6.7 MB, resident). Envoy's
// field rules are applied by sidecar/fieldrules instead.
func TestNoGeneratedValidators(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meridian-proxy")
	build := exec.Command("go", "build", "-tags=grpcnotrace", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	var found []string
	for line := range strings.Lines(string(out)) {
		generated := strings.Contains(line, "envoyproxy/go-control-plane") || strings.Contains(line, "cncf/xds")
		if generated && (strings.Contains(line, ").ValidateAll") || strings.Contains(line, ").Validate") || strings.Contains(line, ").validate")) {
			found = append(found, strings.TrimSpace(line))
		}
	}
	if len(found) > 0 {
		t.Errorf("%d generated validators linked, e.g. %v", len(found), found[:min(3, len(found))])
	}
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("meridian-proxy: %.1f MB", float64(fi.Size())/(1<<20))
	}
}
