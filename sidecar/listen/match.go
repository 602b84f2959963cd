package listen

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// connFacts are what filter chains match on.
type connFacts struct {
	dest, source netip.AddrPort
	sni          string
	transport    string // "tls" or "raw_buffer"
	alpn         []string
}

// selectChain picks a filter chain as Envoy does: each criterion in turn
// (destination port, destination IP, server name, transport protocol,
// application protocols, source IP) keeps the chains that match it most
// specifically, or, when none does, the chains that do not constrain it.
// nil means no chain matched (the listener's default chain then applies).
func selectChain[C any](chains []C, match func(C) *xdsconfig.ChainMatch, f connFacts) (C, bool) {
	cands := slices.Clone(chains)
	narrow := func(score func(m *xdsconfig.ChainMatch) int) {
		// score: -1 excluded, 0 unconstrained, >0 the specificity of a match
		best := 0
		for _, c := range cands {
			best = max(best, score(match(c)))
		}
		var keep []C
		for _, c := range cands {
			if s := score(match(c)); s == best {
				keep = append(keep, c)
			}
		}
		cands = keep
	}
	narrow(func(m *xdsconfig.ChainMatch) int {
		switch m.DestPort {
		case 0:
			return 0
		case uint32(f.dest.Port()):
			return 1
		}
		return -1
	})
	narrow(func(m *xdsconfig.ChainMatch) int { return prefixScore(m.DestPrefixes, f.dest.Addr()) })
	narrow(func(m *xdsconfig.ChainMatch) int { return nameScore(m.ServerNames, f.sni) })
	narrow(func(m *xdsconfig.ChainMatch) int {
		switch m.TransportProtocol {
		case "":
			return 0
		case f.transport:
			return 1
		}
		return -1
	})
	narrow(func(m *xdsconfig.ChainMatch) int {
		if len(m.ALPN) == 0 {
			return 0
		}
		for _, p := range f.alpn {
			if slices.Contains(m.ALPN, p) {
				return 1
			}
		}
		return -1
	})
	narrow(func(m *xdsconfig.ChainMatch) int { return prefixScore(m.SourcePrefixes, f.source.Addr()) })
	var zero C
	if len(cands) == 0 {
		return zero, false
	}
	return cands[0], true
}

// prefixScore is 0 without prefixes, the longest matching prefix's length
// + 1, or -1.
func prefixScore(ps []netip.Prefix, a netip.Addr) int {
	if len(ps) == 0 {
		return 0
	}
	best := -1
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			best = max(best, p.Bits()+1)
		}
	}
	return best
}

// nameScore is 0 without names, and prefers an exact name to the longest
// wildcard suffix.
func nameScore(names []string, sni string) int {
	if len(names) == 0 {
		return 0
	}
	sni = strings.ToLower(sni)
	best := -1
	for _, n := range names {
		switch {
		case n == sni:
			return 1 << 16
		case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]) && len(sni) > len(n)-1:
			best = max(best, len(n))
		}
	}
	return best
}
