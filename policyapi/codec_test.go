package policyapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/policyapi"
)

// Objects other clusters replicate are network input: one that does not
// decode or validate is left out, logged and counted, and the rest stays
// in force.
func TestDamagedPoliciesAreLeftOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.mustApply(webFailover)
	e.inForce(1)
	ctx := context.Background()
	for _, r := range []struct {
		k    policy.Key
		spec string
	}{
		{policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "garbage"}, `{"spec": 42}`},
		{policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "not-json"}, `{{{`},
		{policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "invalid"}, `{"spec": {"distribute": [{"from": "us-east-1/*", "to": [{"locality": "eu-west-1/*", "weight": 5}]}]}}`},
		{policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "unknown-field"}, `{"spec": {"failovr": []}}`},
		{policy.Key{Kind: "Wormhole", Namespace: "shop", Name: "from-the-future"}, `{"spec": {}}`},
	} {
		if _, err := e.pol.Put(ctx, r.k, []byte(r.spec)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := counter(t, e, "meridian_policy_ignored_total", ""); n < 4 {
			return fmt.Errorf("%v ignored, want the 4 damaged FailoverPolicies", n)
		}
		return nil
	})
	e.inForce(1)
	if _, err := e.explain("web.shop", "eks-use1"); err != nil {
		t.Fatalf("explain with damaged policies in the store: %v", err)
	}
}

// FuzzDecode: whatever bytes a store resource holds, Decode returns an
// object or an error, never panics, and what it returns encodes back to
// a value that decodes to the same object.
func FuzzDecode(f *testing.F) {
	f.Add("FailoverPolicy", `{"spec":{"failover":[{"from":"us-east-1","to":["eu-west-1"]}]},"labels":{"a":"b"},"source":"api"}`)
	f.Add("ResidencyRule", `{"spec":{"allowedRegions":["eu-west-1"],"mode":"audit"}}`)
	f.Add("Gateway", `{"spec":null}`)
	f.Add("TrafficRoute", `{"spec":{"hosts":["web"]},"annotations":{"x":""}}`)
	f.Add("Nope", `{}`)
	f.Fuzz(func(t *testing.T, kind, value string) {
		r := &policy.Resource{Key: policy.Key{Kind: kind, Namespace: "shop", Name: "x"}, Spec: []byte(value), Stamp: 1, Origin: "c/0"}
		o, src, err := policyapi.Decode(r)
		if err != nil {
			return
		}
		k, val, err := policyapi.Encode(o, src)
		if err != nil {
			t.Fatalf("Encode of a decoded object: %v", err)
		}
		back, src2, err := policyapi.Decode(&policy.Resource{Key: k, Spec: val, Stamp: 1, Origin: "c/0"})
		if err != nil || src2 != src {
			t.Fatalf("decoding the re-encoded value %s: %v (source %q → %q)", val, err, src, src2)
		}
		_, val2, _ := policyapi.Encode(back, src2)
		if string(val2) != string(val) {
			t.Fatalf("not stable: %s → %s", val, val2)
		}
	})
}
