//go:build linux

package sched

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// slices reads se.slice (ns) of every thread of the process; false when
// the kernel does not report it.
func slices(t *testing.T) (map[string]int64, bool) {
	t.Helper()
	paths, err := filepath.Glob("/proc/self/task/*/sched")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads under /proc/self/task: %v", err)
	}
	out := map[string]int64{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue // the thread exited
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "se.slice" {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("%s: se.slice %q", p, v)
				}
				out[p] = n
			}
		}
		f.Close()
	}
	return out, len(out) > 0
}

// TestSetSlice: every thread, and those started later, get the slice,
// and 0 restores the default. A kernel without custom slices (before
// Linux 6.12, which does not report se.slice) must accept the request and
// ignore it, as the package doc promises: that much is checked there.
func TestSetSlice(t *testing.T) {
	before, reports := slices(t)
	var def int64
	for _, v := range before {
		def = v
	}
	const want = 300 * time.Microsecond
	n, err := SetSlice(want)
	if err != nil {
		t.Fatal(err)
	}
	defer SetSlice(0)
	if n < 2 {
		t.Fatalf("set %d threads; a Go process has several", n)
	}
	if !reports {
		if _, err := SetSlice(0); err != nil {
			t.Fatal(err)
		}
		t.Log("this kernel does not report se.slice (custom slices are Linux 6.12 and later): checked only that the request is accepted")
		return
	}
	// Threads started afterwards inherit it: make the runtime start some.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); time.Sleep(20 * time.Millisecond) }()
	}
	wg.Wait()
	after, _ := slices(t)
	for p, v := range after {
		if v != int64(want) {
			t.Errorf("%s: se.slice %d ns; want %d", p, v, want.Nanoseconds())
		}
	}
	if _, err := SetSlice(0); err != nil {
		t.Fatal(err)
	}
	reset, _ := slices(t)
	for p, v := range reset {
		if v != def {
			t.Errorf("%s: se.slice %d ns after SetSlice(0); want the default %d", p, v, def)
		}
	}
}

func TestSetSliceBounds(t *testing.T) {
	for _, d := range []time.Duration{-time.Microsecond, 50 * time.Microsecond, time.Second} {
		if _, err := SetSlice(d); err == nil || !strings.Contains(err.Error(), "want 0 or 100µs to 100ms") {
			t.Errorf("SetSlice(%v) = %v; want it refused with the bounds", d, err)
		}
	}
}
