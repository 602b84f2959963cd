package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// Close stops the lab: every process it started, its network namespaces,
// and its state directory. It is idempotent.
func (l *Lab) Close() error { return l.close(context.Background(), false) }

// close stops everything; keepLogs leaves logs/ behind (a failed start).
func (l *Lab) close(ctx context.Context, keepLogs bool) error {
	l.mu.Lock()
	procs := l.procs
	l.procs = map[string]*proc{}
	l.mu.Unlock()
	if l.lock == nil {
		return nil
	}
	dir := l.opts.StateDir
	// Traffic first, then the demo, then the control planes: nothing
	// logs errors about what was stopped before it.
	for _, order := range []func(string) bool{
		func(n string) bool { return strings.HasSuffix(n, ".users") },
		func(n string) bool { return !strings.HasSuffix(n, ".meridiand") },
		func(string) bool { return true },
	} {
		var batch []*proc
		for n, p := range procs {
			if order(n) {
				batch = append(batch, p)
				delete(procs, n)
			}
		}
		done := make(chan struct{}, len(batch))
		for _, p := range batch {
			go func() { p.stop(dir, stopGrace); done <- struct{}{} }()
		}
		for range batch {
			<-done
		}
	}
	killLeftovers(ctx, dir, stopGrace)
	teardownNetns(ctx, l.opts.Prefix)
	err := removeState(dir, keepLogs)
	l.lock.Close()
	l.lock = nil
	return err
}

// removeState removes the state directory, or all of it but the logs.
func removeState(dir string, keepLogs bool) error {
	if !keepLogs {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		return nil
	}
	entries, _ := os.ReadDir(dir)
	var errs []error
	for _, e := range entries {
		if e.Name() != "logs" && e.Name() != "lock" {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// cleanLeftovers stops the processes and removes the namespaces a lab
// that did not stop cleanly left behind, and says what it did ("" when
// there was nothing). The caller holds the lock.
func cleanLeftovers(ctx context.Context, dir, prefix string) string {
	if st, err := Load(dir); err == nil && st.Network.Prefix != "" {
		prefix = st.Network.Prefix
	}
	procs := killLeftovers(ctx, dir, stopGrace)
	nets := teardownNetns(ctx, prefix)
	var parts []string
	if len(procs) > 0 {
		parts = append(parts, fmt.Sprintf("stopped %d processes", len(procs)))
	}
	if len(nets) > 0 {
		parts = append(parts, "removed namespaces "+strings.Join(nets, ", "))
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil || len(parts) > 0 {
		_ = removeState(dir, false)
		_ = os.MkdirAll(dir, 0o755)
		parts = append(parts, "removed its state")
	}
	return strings.Join(parts, ", ")
}

// Down stops the lab in dir: it asks a running supervisor (lab up) to
// stop, and waits; then, or when no supervisor runs, it cleans up what a
// crashed lab left. It returns what it did, and ErrNotRunning when there
// was nothing at all.
func Down(ctx context.Context, dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("lab: state directory: %w", err)
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("%w: %s does not exist", ErrNotRunning, dir)
	}
	st, _ := Load(dir)
	if running(dir) {
		if st == nil || st.Supervisor <= 0 {
			return "", fmt.Errorf("lab: %s is locked by a lab still starting; try again in a moment", dir)
		}
		if err := syscall.Kill(st.Supervisor, syscall.SIGTERM); err != nil {
			return "", fmt.Errorf("lab: stopping the lab's supervisor (pid %d): %w", st.Supervisor, err)
		}
		// Wait for the supervisor itself to exit: it removes the state
		// directory, lock included, before it does.
		deadline := time.Now().Add(30 * time.Second)
		for alive(st.Supervisor) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return "", fmt.Errorf("lab: the lab's supervisor (pid %d) did not stop within 30s", st.Supervisor)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := os.Stat(filepath.Join(dir, stateFile)); err != nil {
			return fmt.Sprintf("stopped the lab (supervisor pid %d)", st.Supervisor), nil
		}
	}
	lock, err := acquire(dir)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	prefix := "mlab"
	if st != nil {
		prefix = st.Network.Prefix
	}
	what := cleanLeftovers(ctx, dir, prefix)
	_ = os.RemoveAll(dir)
	if what == "" {
		return "", fmt.Errorf("%w in %s", ErrNotRunning, dir)
	}
	return "cleaned up a lab that was not running cleanly: " + what, nil
}
