// Package deploy holds what installs Meridian on Kubernetes and watches it
// there, and embeds the plain manifests for meridianctl:
//
//	crds/                 CustomResourceDefinitions, generated from api/v1alpha1 (not edited here)
//	helm/meridian/        the Helm chart; its crds/ is a link to ../../crds, so they cannot drift
//	helm/meridian/profiles/  install profiles: minimal, default, demo (values files)
//	manifests/PROFILE.yaml   the chart's templates rendered per profile (`go test ./deploy -update`);
//	                      the CRDs stay in crds/ only, so regenerating them never makes these stale:
//	                      kubectl apply --server-side -f deploy/crds -f deploy/manifests/demo.yaml
//	kind/                 a three-cluster kind lab: cluster configs and lab.sh
//	observability/        Prometheus scrape configuration and the Grafana dashboard
//	Dockerfile            the Meridian image (meridiand, meridian-proxy, meridianctl) and the init image
//
// The tests are the proof that all of it holds together: the chart lints and
// renders for every profile, refuses a value of the wrong type, renders a
// configuration meridiand accepts and RBAC that covers what discovery needs;
// the rendered manifests are current; every manifest is accepted by a real
// kube-apiserver (kubectl apply --dry-run=server); the dashboard's queries
// name only metrics the code exports, and docs/metrics.md lists them all.
//
// Helm is built from the helm.sh/helm/v3 module in tools/helm by
// scripts/helm.sh and cached, so that the main module does not depend on it.
package deploy

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
)

//go:embed manifests/*.yaml crds/*.yaml
var files embed.FS

// Profiles are the install profiles, from the least to the most installed.
var Profiles = []string{"minimal", "default", "demo"}

// Manifest returns the plain manifests of an install profile: every object
// the chart renders for it, the namespace (meridian-system) included, as
// multi-document YAML. CRDs are not in it: see CRDs.
func Manifest(profile string) ([]byte, error) {
	if !slices.Contains(Profiles, profile) {
		return nil, fmt.Errorf("deploy: unknown profile %q (want one of %v)", profile, Profiles)
	}
	return files.ReadFile("manifests/" + profile + ".yaml")
}

// CRDs returns every CustomResourceDefinition of Meridian's policy kinds,
// as multi-document YAML, to be applied before the manifests.
func CRDs() ([]byte, error) {
	entries, err := fs.Glob(files, "crds/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	var out []byte
	for _, name := range entries {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
		out = append(append(out, "---\n"...), b...)
	}
	return out, nil
}
