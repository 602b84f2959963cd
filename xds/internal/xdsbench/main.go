package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	services := flag.Int("services", 1000, "services in the registry")
	endpoints := flag.Int("endpoints", 10, "endpoints per service")
	clients := flag.Int("clients", 1000, "ADS clients")
	baseClients := flag.Int("baseline-clients", 100, "clients for the baseline and the like-for-like Meridian run: the baseline holds a full snapshot per client (about 30 MB each here), so 1,000 would not fit in this machine's memory")
	changes := flag.Int("changes", 20, "endpoint changes measured for Meridian")
	baseChanges := flag.Int("baseline-changes", 3, "endpoint changes measured for the baseline (each rebuilds every snapshot)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up on a phase after this long")
	maxRSS := flag.Int("max-rss-mb", 6000, "abort a run whose resident memory exceeds this, rather than starve the machine")
	run := flag.String("run", "", "run one implementation (meridian or baseline) and print its result as JSON")
	addr := flag.String("client-process", "", "run the client process against this address")
	n := flag.Int("n", 0, "clients in the client process")
	profile := flag.String("cpuprofile", "", "with -run: write a CPU profile of the change phase")
	delta := flag.Bool("delta", false, "clients speak incremental (delta) xDS instead of state of the world")
	flag.Parse()

	switch {
	case *addr != "":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := runClients(ctx, *addr, *n, *delta); err != nil {
			fmt.Fprintln(os.Stderr, "xdsbench clients:", err)
			os.Exit(1)
		}
	case *run != "":
		res, err := serve(serveOpts{impl: *run, services: *services, endpoints: *endpoints, clients: *clients, changes: *changes,
			timeout: *timeout, profile: *profile, delta: *delta, maxRSS: *maxRSS})
		if err != nil {
			fmt.Fprintln(os.Stderr, "xdsbench:", err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
	default:
		common := []string{"-services", strconv.Itoa(*services), "-endpoints", strconv.Itoa(*endpoints),
			"-timeout", timeout.String(), "-max-rss-mb", strconv.Itoa(*maxRSS)}
		runs := []struct {
			impl         string
			clients, chg int
			delta        bool
		}{
			{"meridian", *clients, *changes, false},
			{"meridian", *clients, *changes, true},
			{"meridian", *baseClients, *changes, false},
			{"baseline", *baseClients, *baseChanges, false},
		}
		load0 := loadAvg()
		var out []result
		for _, r := range runs {
			args := append([]string{"-run", r.impl, "-clients", strconv.Itoa(r.clients), "-changes", strconv.Itoa(r.chg), "-delta=" + strconv.FormatBool(r.delta)}, common...)
			res, err := runChild(args)
			if err != nil {
				fmt.Fprintf(os.Stderr, "xdsbench: %s with %d clients: %v\n", r.impl, r.clients, err)
				os.Exit(1)
			}
			out = append(out, res)
		}
		report(out[0], out[1], out[2], out[3])
		fmt.Printf("machine load average (1 min) at start %s, at end %s: other work on the machine slows every figure\n", load0, loadAvg())
	}
}

// runChild runs one implementation in its own process, so that each has
// its own CPU and RSS accounting.
func runChild(args []string) (result, error) {
	var stdout bytes.Buffer
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return result{}, err
	}
	var r result
	return r, json.Unmarshal(stdout.Bytes(), &r)
}

type row struct {
	name, unit string
	get        func(result) float64
}

var rows = []row{
	{"initial sync, wall", "s", func(r result) float64 { return r.SyncWall }},
	{"initial sync, server CPU", "s", func(r result) float64 { return r.SyncCPU }},
	{"change -> client ACK, p50", "ms", func(r result) float64 { return r.AckP50 }},
	{"change -> client ACK, p99", "ms", func(r result) float64 { return r.AckP99 }},
	{"change -> all clients ACKed, median", "ms", func(r result) float64 { return r.AllAckedP50 }},
	{"server CPU per push", "s", func(r result) float64 { return r.CPUPerPush }},
	{"server peak RSS", "MB", func(r result) float64 { return r.PeakRSSMB }},
}

// report prints the like-for-like comparison (Meridian and the baseline
// with the same clients, both measured), then Meridian at full size (state
// of the world and delta) beside the baseline scaled to that size: its
// cost is one full translation and snapshot per client, linear in clients.
func report(full, fullDelta, small, base result) {
	fmt.Printf("xDS: %d services, %d endpoints, Envoy-like sidecar ADS clients in 3 zones, own connection each, in a separate process; loopback\n", full.Services, full.Endpoints)
	fmt.Printf("\n1) same size, both measured: %d clients, state of the world\n", small.Clients)
	fmt.Printf("%-38s %14s %14s %9s\n", "", "meridian", "baseline", "ratio")
	for _, r := range rows {
		m, b := r.get(small), r.get(base)
		fmt.Printf("%-38s %11.3f %-2s %11.3f %-2s %8.1fx\n", r.name, m, r.unit, b, r.unit, ratio(b, m))
	}
	scale := float64(full.Clients) / float64(base.Clients)
	fmt.Printf("\n2) %d clients: Meridian measured (state of the world, delta); baseline scaled x%.0f from %d clients\n", full.Clients, scale, base.Clients)
	fmt.Printf("%-38s %14s %14s %14s %9s\n", "", "meridian sotw", "meridian delta", "baseline est.", "ratio")
	for _, r := range rows {
		m, d, b := r.get(full), r.get(fullDelta), r.get(base)*scale
		fmt.Printf("%-38s %11.3f %-2s %11.3f %-2s %11.3f %-2s %8.1fx\n", r.name, m, r.unit, d, r.unit, b, r.unit, ratio(b, m))
	}
	fmt.Printf("(changes measured: meridian %d, baseline %d, each 250ms after the previous converged; Meridian pushes such an isolated change at once and coalesces changes that follow a push within 100ms)\n", full.Changes, base.Changes)
	check := func(ok bool, what string) {
		verdict := "FAIL"
		if ok {
			verdict = "ok"
		}
		fmt.Printf("target %-72s %s\n", what+":", verdict)
	}
	check(full.SyncWall < 25, fmt.Sprintf("initial sync of %d clients under 25 s (%.1f s)", full.Clients, full.SyncWall))
	check(small.SyncWall <= base.SyncWall/2, fmt.Sprintf("initial sync at most half the baseline's time, same size (%.2f)", small.SyncWall/base.SyncWall))
	check(small.SyncCPU <= base.SyncCPU/4, fmt.Sprintf("initial sync at most a quarter of the baseline's CPU, same size (%.2f)", small.SyncCPU/base.SyncCPU))
	check(full.SyncWall <= base.SyncWall*scale/2, fmt.Sprintf("initial sync at most half the baseline's time, %d clients (%.2f)", full.Clients, full.SyncWall/(base.SyncWall*scale)))
	check(full.SyncCPU <= base.SyncCPU*scale/4, fmt.Sprintf("initial sync at most a quarter of the baseline's CPU, %d clients (%.2f)", full.Clients, full.SyncCPU/(base.SyncCPU*scale)))
}

// loadAvg is the one-minute load average, for the reader to judge noise.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func ratio(b, m float64) float64 {
	if m <= 0 {
		return 0
	}
	return b / m
}
