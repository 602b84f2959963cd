package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab/traffic"
)

// skipSlowEnv, set to 1, keeps only the fast subset of scenarios; make
// test and make e2e both run every scenario.
const skipSlowEnv = "MERIDIAN_SKIP_SLOW_E2E"

// fullOnly skips a scenario only when skipSlowEnv asks for the fast subset.
func fullOnly(t *testing.T) {
	t.Helper()
	if os.Getenv(skipSlowEnv) == "1" {
		t.Skip(skipSlowEnv + "=1: not in the fast subset")
	}
}

// last reports a target's settled calls of the last d.
func last(g *traffic.Generator, target string, d time.Duration) traffic.TargetReport {
	r, _ := g.Window(d).Target(target)
	return r
}

// waitServed waits until, over the last second, at least 99% of a
// target's calls succeed and every success came from cluster.
func waitServed(t *testing.T, g *traffic.Generator, target, cluster string, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		r := last(g, target, time.Second)
		if r.Requests == 0 || r.SuccessRate() < 0.99 || r.Served[cluster] != r.OK {
			return fmt.Errorf("%s: %s; want ≥99%% from %s", target, r.Summary(), cluster)
		}
		return nil
	})
}

// servedBy accepts the paths (traffic.Path) whose first hop ran in
// cluster, and, when zone is given, in that zone.
func servedBy(cluster, zone string) func(string) bool {
	return func(p string) bool {
		first, _, _ := strings.Cut(p, " > ")
		_, where, _ := strings.Cut(first, "@")
		c, z, _ := strings.Cut(where, "/")
		return c == cluster && (zone == "" || z == zone)
	}
}

// moved waits until a target's traffic moved for good (see
// traffic.Generator.Moved) and returns how long after since it did.
func moved(t *testing.T, g *traffic.Generator, target string, since time.Time, match func(string) bool) time.Duration {
	t.Helper()
	var d time.Duration
	testutil.Eventually(t, 60*time.Second, func() error {
		var ok bool
		if d, ok = g.Moved(target, since, match); !ok {
			return fmt.Errorf("%s has not moved: %s", target, last(g, target, time.Second).Summary())
		}
		return nil
	})
	return d
}

// consistently checks cond every 100ms for d, failing the test at the
// first error: what must hold for a while (a partition keeps its sides
// apart).
func consistently(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		if err := cond(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// collect lets a generator run until its settled history reaches d past
// now: the measurement window of a figure.
func collect(t *testing.T, g *traffic.Generator, d time.Duration) {
	t.Helper()
	until := time.Now().Add(d)
	testutil.Eventually(t, d+time.Minute, func() error {
		if g.Settled().Before(until) {
			return fmt.Errorf("the generator has settled calls up to %v only", g.Settled().Format(time.TimeOnly))
		}
		return nil
	})
}

// servedOutside counts a target's successes served (at the first hop) by
// clusters not in allowed.
func servedOutside(r traffic.TargetReport, allowed ...string) int {
	n := 0
	for c, k := range r.Served {
		if !slices.Contains(allowed, c) {
			n += k
		}
	}
	return n
}

// sharesLine renders shares for a figure line: "eks-use1 90.1%, ...".
func sharesLine(counts map[string]int) string {
	var parts []string
	for _, s := range traffic.Shares(counts) {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", s.Name, 100*s.Fraction))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// within says whether a figure met a target, for figure lines (never an
// assertion: the machine may be slow).
func within(d, target time.Duration) string {
	if d <= target {
		return fmt.Sprintf("within the %v target", target)
	}
	return fmt.Sprintf("MISSED the %v target", target)
}
