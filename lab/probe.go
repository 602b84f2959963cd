package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/registry"
)

// httpClient is for the admin endpoints and generators' stats: short
// timeouts, since a cut cluster must not stall status.
var httpClient = &http.Client{Timeout: 2 * time.Second}

// get fetches url and returns its body, or an error naming the status
// and the start of the body when it is not 200 OK.
func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.Join(strings.Fields(string(b[:min(len(b), 2048)])), " "))
	}
	return b, nil
}

func getJSON(ctx context.Context, url string, v any) error {
	b, err := get(ctx, url)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return json.Unmarshal(b, v)
}

// ready reports nil when meridiand's /readyz says so.
func ready(ctx context.Context, admin string) error {
	if _, err := get(ctx, admin+"/readyz?verbose"); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	return nil
}

// serves reports whether url answers 200.
func serves(ctx context.Context, url string) bool {
	_, err := get(ctx, url)
	return err == nil
}

// registryDump is meridiand's /debug/registry.
func registryDump(ctx context.Context, admin string, endpoints bool) (daemon.RegistryDump, error) {
	var d daemon.RegistryDump
	err := getJSON(ctx, fmt.Sprintf("%s/debug/registry?endpoints=%t", admin, endpoints), &d)
	return d, err
}

// alive counts the clusters a dump shows alive, the dumping one included.
func aliveClusters(d daemon.RegistryDump) int {
	n := 0
	for _, c := range d.Clusters {
		if c.Status.State == "" || c.Status.State == registry.Alive.String() {
			n++
		}
	}
	return n
}

// poll calls check every 100ms until it returns nil or the timeout,
// and returns the last error check gave before the deadline cut it short.
func poll(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return last
		case <-t.C:
		}
	}
}

// Registry returns the global registry as the cluster's meridiand sees it
// (/debug/registry).
func (c *ClusterState) Registry(ctx context.Context) (daemon.RegistryDump, error) {
	return registryDump(ctx, c.Admin, true)
}
