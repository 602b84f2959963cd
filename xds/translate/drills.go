package translate

import "github.com/meridian-mesh/meridian/locality"

// Added by the policy API (policyapi), which owns live drills: the xDS
// server must serve the same engine that explain and drill compute with.

// WithDrains returns the policies with these drill targets drained (their
// endpoints DRAINING in every load assignment), leaving p unchanged. Only
// the engine changes: routes and destination policies are shared.
func (p *Policies) WithDrains(drains ...locality.Target) *Policies {
	var cp Policies
	if p != nil {
		cp = *p
	}
	cp.engine = cp.engine.WithDrains(drains...)
	return &cp
}

// Engine returns the locality engine the translation assigns endpoints
// with: explain and drills use it to show what proxies get.
func (p *Policies) Engine() *locality.Engine { return p.eng() }
