package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Cut takes a cluster off the lab: in netns mode its link to the core goes
// down (nothing reaches it, it reaches nothing — its processes keep
// running); on loopback every process of the cluster is stopped with
// SIGSTOP, so that connections to it hang as they would across a cut
// link. Heal undoes it.
func (s *State) Cut(ctx context.Context, cluster string) error { return s.setCut(ctx, cluster, true) }

// Heal restores a cluster Cut took off.
func (s *State) Heal(ctx context.Context, cluster string) error { return s.setCut(ctx, cluster, false) }

func (s *State) setCut(ctx context.Context, cluster string, cut bool) error {
	c, err := s.Cluster(cluster)
	if err != nil {
		return err
	}
	if s.IsCut(cluster) == cut {
		if cut {
			return fmt.Errorf("lab: %s is cut already (lab heal %s restores it)", cluster, cluster)
		}
		return fmt.Errorf("lab: %s is not cut", cluster)
	}
	if s.Network.Mode == modeNetns {
		i := 0
		for s.Clusters[i].Name != c.Name {
			i++
		}
		if err := setLink(ctx, s, i, !cut); err != nil {
			return err
		}
	} else if err := s.signalCluster(cluster, map[bool]syscall.Signal{true: syscall.SIGSTOP, false: syscall.SIGCONT}[cut]); err != nil {
		return err
	}
	marker := filepath.Join(s.StateDir, "cut", cluster)
	if !cut {
		return os.Remove(marker)
	}
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(marker, nil, 0o644)
}

// IsCut reports whether a cluster is cut off.
func (s *State) IsCut(cluster string) bool {
	_, err := os.Stat(filepath.Join(s.StateDir, "cut", cluster))
	return err == nil
}

// signalCluster signals the process group of every process of a cluster.
func (s *State) signalCluster(cluster string, sig syscall.Signal) error {
	files, _ := filepath.Glob(filepath.Join(s.StateDir, "pids", cluster+".*.pid"))
	n := 0
	for _, f := range files {
		pid, err := readPid(f)
		if err != nil || !ours(pid, s.StateDir) {
			continue
		}
		if err := syscall.Kill(-pid, sig); err != nil {
			return fmt.Errorf("lab: signalling %s: %w", strings.TrimSuffix(filepath.Base(f), ".pid"), err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("lab: no running process of %s", cluster)
	}
	return nil
}

// Partition separates a cluster from the other clusters — both ways, at
// the core router — while the host still reaches it: the control planes on
// each side keep serving their own clients and the API, but cannot gossip
// or replicate across. Netns mode only. Heal with Unpartition.
func (s *State) Partition(ctx context.Context, cluster string) error {
	return s.partition(ctx, cluster, "-I")
}

// Unpartition undoes Partition.
func (s *State) Unpartition(ctx context.Context, cluster string) error {
	return s.partition(ctx, cluster, "-D")
}

func (s *State) partition(ctx context.Context, cluster, op string) error {
	if s.Network.Mode != modeNetns {
		return fmt.Errorf("lab: partitions need network namespaces (this lab runs on %s)", s.Network.Mode)
	}
	i := slices.IndexFunc(s.Clusters, func(c ClusterState) bool { return c.Name == cluster })
	if i < 0 {
		_, err := s.Cluster(cluster)
		return err
	}
	own := fmt.Sprintf("%s.%d.0/24", s.Network.Subnet, i+1)
	for j := range s.Clusters {
		if j == i {
			continue
		}
		other := fmt.Sprintf("%s.%d.0/24", s.Network.Subnet, j+1)
		for _, dir := range [][2]string{{own, other}, {other, own}} {
			if err := ipCmd(ctx, "ip", "netns", "exec", coreNS(s.Network.Prefix), "iptables", op, "FORWARD", "-s", dir[0], "-d", dir[1], "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}
