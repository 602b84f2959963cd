package lab

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Status is what `lab status` shows.
type Status struct {
	StateDir   string          `json:"stateDir"`
	Network    Network         `json:"network"`
	Supervisor int             `json:"supervisor"`
	Started    time.Time       `json:"started"`
	Clusters   []ClusterStatus `json:"clusters"`
	Traffic    []Traffic       `json:"traffic,omitempty"`
	Notes      []string        `json:"notes,omitempty"`
}

// ClusterStatus is one cluster as the lab sees it now.
type ClusterStatus struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	// Cut is true while `lab cut` holds the cluster off.
	Cut bool `json:"cut"`
	// Meridiand is "ready", or why not.
	Meridiand string `json:"meridiand"`
	// ClustersAlive counts the clusters this meridiand sees alive.
	ClustersAlive int `json:"clustersAlive"`
	// Endpoints counts the demo's serving endpoints it sees, mesh-wide.
	Endpoints int    `json:"endpoints"`
	GRPC      string `json:"grpc"`
	Admin     string `json:"admin"`
	// Ingress is the ingress gateway's address; Gateways is "ready" when
	// the ingress and east-west gateways both are, or which is not.
	Ingress  string `json:"ingress,omitempty"`
	Gateways string `json:"gateways,omitempty"`
}

// LoadRunning reads the lab.json of a running lab: one whose supervisor
// (lab up) is alive.
func LoadRunning(dir string) (*State, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lab: state directory: %w", err)
	}
	s, err := Load(dir)
	if err != nil {
		return nil, err
	}
	if !running(dir) {
		return nil, fmt.Errorf("%w (lab in %s, supervisor pid %d)", ErrDied, dir, s.Supervisor)
	}
	return s, nil
}

// GetStatus reads the lab in dir and asks every part of it how it is.
func GetStatus(ctx context.Context, dir string, window time.Duration) (*Status, error) {
	s, err := LoadRunning(dir)
	if err != nil {
		return nil, err
	}
	st := &Status{StateDir: s.StateDir, Network: s.Network, Supervisor: s.Supervisor, Started: s.Started, Notes: s.Notes,
		Clusters: make([]ClusterStatus, len(s.Clusters))}
	var wg sync.WaitGroup
	wg.Go(func() { st.Traffic = s.Traffic(ctx, window) })
	for i, c := range s.Clusters {
		wg.Go(func() {
			cs := ClusterStatus{Name: c.Name, Region: c.Region, Cut: s.IsCut(c.Name), GRPC: c.GRPC, Admin: c.Admin, Meridiand: "ready"}
			if err := ready(ctx, c.Admin); err != nil {
				cs.Meridiand = "unreachable"
				if cs.Cut {
					cs.Meridiand = "unreachable (cut)"
				}
			} else if d, err := registryDump(ctx, c.Admin, true); err == nil {
				cs.ClustersAlive, cs.Endpoints = aliveClusters(d), servingEndpoints(d, Namespace)
			}
			if c.Ingress != "" {
				cs.Ingress, cs.Gateways = c.Ingress, gatewaysReady(ctx, c)
			}
			st.Clusters[i] = cs
		})
	}
	wg.Wait()
	return st, nil
}

// gatewaysReady is "ready" when both gateways of a cluster have applied
// their configuration, else which are not.
func gatewaysReady(ctx context.Context, c ClusterState) string {
	var down []string
	for name, addr := range map[string]string{"ingress": c.Ingress, "east-west": c.EastWest} {
		ip, _, _ := net.SplitHostPort(addr)
		if _, err := get(ctx, "http://"+net.JoinHostPort(ip, strconv.Itoa(proxyHealthPort))+"/ready"); err != nil {
			down = append(down, name)
		}
	}
	if len(down) == 0 {
		return "ready"
	}
	slices.Sort(down)
	return strings.Join(down, ", ") + " not ready"
}

// Write prints a status as tables.
func (st *Status) Write(w io.Writer) {
	fmt.Fprintf(w, "Lab in %s: %s, up %s (supervisor pid %d)\n\n", st.StateDir, st.Network.Mode,
		time.Since(st.Started).Round(time.Second), st.Supervisor)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREGION\tLINK\tMERIDIAND\tCLUSTERS ALIVE\tDEMO ENDPOINTS\tGATEWAYS\tGRPC\tADMIN\tINGRESS")
	for _, c := range st.Clusters {
		link := "up"
		if c.Cut {
			link = "cut"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\n", c.Name, c.Region, link, c.Meridiand, c.ClustersAlive, len(st.Clusters), c.Endpoints,
			cmp.Or(c.Gateways, "-"), c.GRPC, c.Admin, cmp.Or(c.Ingress, "-"))
	}
	tw.Flush()
	if len(st.Traffic) > 0 {
		fmt.Fprintln(w)
		WriteTraffic(w, st.Traffic)
	}
	for _, n := range st.Notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
}
