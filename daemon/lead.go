package daemon

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// GoLeader adds a function that runs only while this replica leads its
// cluster: what writes the local segment (discovery) or must exist once
// per cluster. With federation, each term of leading (federation's
// OnLead) starts every such function with a context that ends with the
// term, so run must be callable again after it returned. Without
// federation this replica is the cluster's only one, and they are plain
// runners (Go). An error, or a return before the term ends, stops the
// daemon, as a runner's does: another replica then takes over.
func (d *Daemon) GoLeader(name string, run func(ctx context.Context) error) {
	d.leaders = append(d.leaders, runner{name, run})
}

// Leading reports whether this replica leads its cluster; always true
// without federation.
func (d *Daemon) Leading() bool { return d.Federation == nil || d.Federation.Leading() }

// leaderAPIAddr is the gRPC address of the other replica that leads this
// cluster: where a follower sends clients of what only the leader serves.
// "" when this replica leads, or no leader is known.
func (d *Daemon) leaderAPIAddr() string {
	if d.Leading() {
		return ""
	}
	_, addr, _ := d.Federation.Leader()
	return addr
}

// placeLeaders decides, once every component is wired, how the leader
// runners run: from federation's OnLead (see lead), or as plain runners.
func (d *Daemon) placeLeaders() {
	if d.Federation == nil {
		d.runners = append(d.runners, d.leaders...)
		return
	}
	d.Go("leader", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case err := <-d.leadErr:
			return err
		}
	})
	d.AddReadyCheck("leader", func(context.Context) error {
		if _, _, ok := d.Federation.Leader(); !ok {
			return fmt.Errorf("no replica of cluster %s leads yet (election under way)", d.Config.Cluster.Name)
		}
		return nil
	})
}

// lead runs the leader runners for one term of leading, until ctx ends
// (federation.Config.OnLead). The first error is handed to Run, which
// stops the daemon.
func (d *Daemon) lead(ctx context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range d.leaders {
		g.Go(func() error { return r.start(gctx) })
	}
	if err := g.Wait(); err != nil {
		select {
		case d.leadErr <- err:
		default:
		}
	}
}

// start runs r until ctx ends. Returning before, with or without an
// error, is an error: components stop only when told to.
func (r runner) start(ctx context.Context) error {
	err := r.run(ctx)
	if err == nil && ctx.Err() == nil {
		err = errors.New("stopped on its own")
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("daemon: %s: %w", r.name, err)
	}
	return nil
}
