package inject

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// IPTablesRules returns the nat table, in iptables-restore format, that the
// init container installs: inbound TCP goes to the sidecar's inbound port,
// outbound TCP to its outbound port, except the sidecar's own traffic (by
// its user), loopback, the sidecar's own ports (15000–15099) and what the
// settings exclude. IPv4 only; IPv6 pods keep direct connectivity.
func IPTablesRules(excludeInbound []int, excludeOutbound []string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("*nat")
	for _, chain := range []string{"MERIDIAN_INBOUND", "MERIDIAN_IN_REDIRECT", "MERIDIAN_OUTPUT", "MERIDIAN_REDIRECT"} {
		line(":%s - [0:0]", chain)
	}
	line("-A MERIDIAN_IN_REDIRECT -p tcp -j REDIRECT --to-ports %d", InboundPort)
	line("-A MERIDIAN_REDIRECT -p tcp -j REDIRECT --to-ports %d", OutboundPort)
	line("-A PREROUTING -p tcp -j MERIDIAN_INBOUND")
	line("-A MERIDIAN_INBOUND -p tcp --dport 15000:15099 -j RETURN")
	for _, p := range excludeInbound {
		line("-A MERIDIAN_INBOUND -p tcp --dport %d -j RETURN", p)
	}
	line("-A MERIDIAN_INBOUND -p tcp -j MERIDIAN_IN_REDIRECT")
	line("-A OUTPUT -p tcp -j MERIDIAN_OUTPUT")
	line("-A MERIDIAN_OUTPUT -m owner --uid-owner %d -j RETURN", ProxyUID)
	line("-A MERIDIAN_OUTPUT -d 127.0.0.1/32 -j RETURN")
	for _, c := range excludeOutbound {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
			line("-A MERIDIAN_OUTPUT -d %s -j RETURN", p.Masked())
		}
	}
	line("-A MERIDIAN_OUTPUT -j MERIDIAN_REDIRECT")
	line("COMMIT")
	return b.String()
}

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }
