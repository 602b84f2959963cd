package lab

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/daemon"
)

func TestParseClusters(t *testing.T) {
	cs, err := ParseClusters([]string{"onprem-dc1", " eks-euw1", "edge=ap-south-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || cs[1].Labels["jurisdiction"] != "eu" || cs[2].Region != "ap-south-1" || cs[2].Zones[0] != "ap-south-1-a" {
		t.Errorf("ParseClusters = %+v", cs)
	}
	for _, bad := range [][]string{
		{}, {"nope"}, {"eks-use1", "eks-use1"}, {"edge=Not_A_Region"}, {"Bad_Name=r1"},
		{"a=r", "b=r", "c=r", "d=r", "e=r", "f=r", "g=r", "h=r", "i=r", "j=r"},
	} {
		if _, err := ParseClusters(bad); err == nil || !strings.HasPrefix(err.Error(), "--clusters") {
			t.Errorf("ParseClusters(%q) = %v, want an error naming --clusters", bad, err)
		}
	}
}

// TestPlan checks the address plan and the demo topology: every address
// unique, in the cluster's /24, customer-records in the EU with one stray
// copy outside it.
func TestPlan(t *testing.T) {
	s := plan("/state", Known, Network{Mode: modeNetns, Prefix: "mlab", Subnet: "10.250"}, nil, true, false)
	seen := map[string]bool{}
	eu, stray := 0, 0
	for i, c := range s.Clusters {
		if c.Netns != "mlab-"+c.Name || c.GRPC != c.IP+":15010" {
			t.Errorf("cluster %s: netns %q, grpc %q", c.Name, c.Netns, c.GRPC)
		}
		for _, in := range c.Instances {
			if seen[in.Address] {
				t.Errorf("address %s used twice", in.Address)
			}
			seen[in.Address] = true
			if !strings.HasPrefix(in.Address, "10.250."+string(rune('1'+i))+".") {
				t.Errorf("%s/%s at %s, outside its cluster's /24", c.Name, in.Service, in.Address)
			}
			if in.Service == CustomerRecords {
				if in.Stray {
					stray++
				} else if c.Labels["jurisdiction"] == "eu" {
					eu++
				}
			}
		}
	}
	if eu != 2 || stray != 1 {
		t.Errorf("customer-records: %d in the EU, %d stray; want 2 and 1", eu, stray)
	}
	if got := plan("/s", Known[:2], Network{Subnet: "127.77"}, nil, true, false); strings.Contains(got.Policies, "ResidencyRule") {
		t.Error("a lab without an EU cluster got a residency rule")
	}
}

// TestPolicies loads the demo's policies as the policy API would.
func TestPolicies(t *testing.T) {
	for _, cs := range [][]Cluster{Known, Known[:1], Known[1:]} {
		for _, permissive := range []bool{false, true} {
			objs, err := v1alpha1.Load([]byte(policies(cs, permissive)), v1alpha1.LoadOptions{})
			if err != nil {
				t.Fatalf("%d clusters: %v\n%s", len(cs), err, policies(cs, permissive))
			}
			if len(objs) == 0 {
				t.Errorf("%d clusters: no policies", len(cs))
			}
		}
	}
}

// TestMeridiandConfig writes each cluster's configuration and reads it
// back as meridiand does.
func TestMeridiandConfig(t *testing.T) {
	dir := t.TempDir()
	s := plan(dir, Known, Network{Mode: modeLoopback, Prefix: "mlab", Subnet: "127.77"}, nil, true, false)
	k, err := makeKeys(dir, s.Clusters)
	if err != nil {
		t.Fatal(err)
	}
	// With RootHolder the first cluster starts from the root directory
	// and the others from their intermediates, as by default.
	for _, rootHolder := range []bool{false, true} {
		for i, c := range s.Clusters {
			path := filepath.Join(dir, c.Name+".yaml")
			if err := writeConfig(path, meridiandConfig(s, i, k, rootHolder)); err != nil {
				t.Fatal(err)
			}
			cfg, err := daemon.LoadConfigFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
			// The first cluster starts the mesh; the others federate once
			// meridianctl join has merged seeds and keyring (TestStartLoopback).
			if cfg.Federation.Enabled != (i == 0) || len(cfg.Federation.Seeds) != 0 || cfg.GRPCAddr != c.GRPC || !cfg.Trust.Enabled {
				t.Errorf("%s: federation %+v, grpc %s, trust %+v", c.Name, cfg.Federation, cfg.GRPCAddr, cfg.Trust)
			}
			if holds := i == 0 && rootHolder; (cfg.Trust.RootDir != "") != holds || (cfg.Trust.CADir == "") != holds {
				t.Errorf("%s (rootHolder %v): trust.rootDir %q, trust.caDir %q", c.Name, rootHolder, cfg.Trust.RootDir, cfg.Trust.CADir)
			}
		}
	}
}
