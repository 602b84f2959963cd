package federation_test

import (
	"context"
	"fmt"

	"github.com/meridian-mesh/meridian/federation/policy"
)

var ctx = context.Background()

func policyKey(name string) policy.Key {
	return policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: name}
}

// samePolicies checks that every member holds the same live policies.
func samePolicies(ms []*member) error {
	var ref map[policy.Key]string
	var refName string
	for _, m := range ms {
		got := map[policy.Key]string{}
		for _, r := range m.f.Policies().Snapshot().List("") {
			got[r.Key] = fmt.Sprintf("%s@%s/%s", r.Spec, r.Stamp, r.Origin)
		}
		if ref == nil {
			ref, refName = got, m.name
			continue
		}
		if len(got) != len(ref) {
			return fmt.Errorf("%s holds %d policies, %s %d", m.name, len(got), refName, len(ref))
		}
		for k, v := range ref {
			if got[k] != v {
				return fmt.Errorf("%s: %s is %q, %s has %q", m.name, k, got[k], refName, v)
			}
		}
	}
	return nil
}
