package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The two ways a lab connects its clusters.
const (
	modeNetns    = "netns"
	modeLoopback = "loopback"
)

// linkDelay is the one-way delay of each known cluster's link to the core
// (netns mode, with sch_netem): two links apart, us-east-1 and eu-west-1
// are about 80ms round trip, on-prem and us-east-1 about 20ms.
var linkDelay = map[string]time.Duration{"onprem-dc1": 4 * time.Millisecond, "eks-use1": 6 * time.Millisecond, "eks-euw1": 34 * time.Millisecond}

const defaultLinkDelay = 10 * time.Millisecond

// ipCmd runs the ip, tc or sh command and returns its error with its
// output.
func ipCmd(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("lab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// netnsProbe says why network namespaces cannot be used here, or nil. In
// Meridian's source tree it first installs what is missing of ip, tc and
// iptables with scripts/apt.sh, as make targets do.
func netnsProbe(ctx context.Context, prefix string) error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if root := moduleRoot(); root != "" {
		_ = ipCmd(ctx, filepath.Join(root, "scripts", "apt.sh"), "ip", "tc", "iptables")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip command is missing (scripts/apt.sh ip installs it)")
	}
	probe := prefix + "-probe"
	if err := ipCmd(ctx, "ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("ip netns add failed: %w", err)
	}
	return ipCmd(ctx, "ip", "netns", "del", probe)
}

func coreNS(prefix string) string   { return prefix + "-core" }
func hostLink(prefix string) string { return prefix + "h" }
func coreLink(i int) string         { return fmt.Sprintf("c%d", i+1) }

// setupNetns builds the lab's network: a core namespace routing between
// one namespace per cluster and the host, each on a veth pair. It sets
// s.Network.Latency when the kernel can add delay (sch_netem), and returns
// a note when it cannot.
func setupNetns(ctx context.Context, s *State) (note string, err error) {
	p, sub := s.Network.Prefix, s.Network.Subnet
	core := coreNS(p)
	steps := [][]string{
		{"ip", "netns", "add", core},
		{"ip", "-n", core, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", core, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
		{"ip", "link", "add", hostLink(p), "type", "veth", "peer", "name", "host", "netns", core},
		{"ip", "addr", "add", sub + ".0.1/24", "dev", hostLink(p)},
		{"ip", "link", "set", hostLink(p), "up"},
		{"ip", "-n", core, "addr", "add", sub + ".0.254/24", "dev", "host"},
		{"ip", "-n", core, "link", "set", "host", "up"},
		{"ip", "route", "replace", sub + ".0.0/16", "via", sub + ".0.254"},
	}
	for i, c := range s.Clusters {
		ns, link := c.Netns, coreLink(i)
		prefix := fmt.Sprintf("%s.%d.", sub, i+1)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", core, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", core, "addr", "add", prefix + "254/24", "dev", link},
			[]string{"ip", "-n", core, "link", "set", link, "up"},
		)
		hosts := []int{1, 2, 3, 4}
		for j := range c.Instances {
			hosts = append(hosts, 10+j)
		}
		for _, h := range hosts {
			steps = append(steps, []string{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", prefix, h), "dev", "eth0"})
		}
		steps = append(steps,
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", ns, "route", "add", "default", "via", prefix + "254"},
		)
	}
	for _, st := range steps {
		if err := ipCmd(ctx, st[0], st[1:]...); err != nil {
			return "", err
		}
	}
	// Latency: netem on both ends of each cluster's link.
	if err := ipCmd(ctx, "tc", "-n", core, "qdisc", "add", "dev", "host", "root", "netem", "delay", "1ms"); err != nil {
		return "no latency between regions: this kernel has no netem queueing discipline (sch_netem)", nil
	}
	_ = ipCmd(ctx, "tc", "-n", core, "qdisc", "del", "dev", "host", "root")
	var lat []string
	for i, c := range s.Clusters {
		d, ok := linkDelay[c.Name]
		if !ok {
			d = defaultLinkDelay
		}
		ms := fmt.Sprintf("%dms", d.Milliseconds())
		for _, st := range [][]string{
			{"tc", "-n", core, "qdisc", "add", "dev", coreLink(i), "root", "netem", "delay", ms},
			{"tc", "-n", c.Netns, "qdisc", "add", "dev", "eth0", "root", "netem", "delay", ms},
		} {
			if err := ipCmd(ctx, st[0], st[1:]...); err != nil {
				return "", err
			}
		}
		lat = append(lat, c.Name+" "+ms)
	}
	s.Network.Latency = "one way, per cluster link: " + strings.Join(lat, ", ")
	return "", nil
}

// setLink cuts (up=false) or restores the link of cluster i to the core.
func setLink(ctx context.Context, s *State, i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ipCmd(ctx, "ip", "-n", coreNS(s.Network.Prefix), "link", "set", coreLink(i), state)
}

// teardownNetns deletes every namespace of the lab with this prefix —
// those the state names and any a crashed lab left — and the host link.
// Processes must be stopped first: a namespace lives while one is in it.
func teardownNetns(ctx context.Context, prefix string) []string {
	var gone []string
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, prefix+"-") {
			if ipCmd(ctx, "ip", "netns", "del", name) == nil {
				gone = append(gone, name)
			}
		}
	}
	// Deleting the core namespace deletes the host link's peer, and so
	// the link and its route; this is for a half-built network.
	_ = ipCmd(ctx, "ip", "link", "del", hostLink(prefix))
	return gone
}
