package server

import "github.com/meridian-mesh/meridian/xds/translate"

// Added by the policy API (policyapi): it compiles the policy store's
// objects once, adds the drills' drains, and explains and drills with the
// very engine it hands over here.

// SetCompiledPolicies replaces the policies in force with a compiled set
// (translate.CompilePolicies, then Policies.WithDrains for live drills);
// the next push, after the debounce period, rebuilds every resource under
// it, as SetPolicies does.
func (s *Server) SetCompiledPolicies(p *translate.Policies) {
	s.mu.Lock()
	s.nextPolicies = p
	s.mu.Unlock()
	select {
	case s.policyKick <- struct{}{}:
	default:
	}
}
