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

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// ready reports nil when meridiand's /readyz says so.
func ready(ctx context.Context, admin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/readyz?verbose", nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("not ready: %s", strings.Join(strings.Fields(string(b)), " "))
	}
	return nil
}

// serves reports whether url answers 200.
func serves(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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
