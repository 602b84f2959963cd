package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// labEnv marks every process a lab starts, with the lab's state directory
// as value: cleanup signals a pid from a pid file only when the process
// still carries the mark, so that a recycled pid is never hit.
const labEnv = "MERIDIAN_LAB"

// proc is a process the lab started.
type proc struct {
	name    string // "meridiand-eks-use1"; the pid and log files are named after it
	cluster string
	cmd     *exec.Cmd
	done    chan struct{} // closed when it exited
	err     error         // its exit status, once done
}

// procSpec is a process to start.
type procSpec struct {
	name, cluster string
	netns         string // run inside this network namespace, when set
	path          string
	args          []string
	env           []string // added to the lab's own environment
}

// start runs a process in its own process group (so that stopping it
// stops whatever it started), with its output in logs/NAME.log and its
// pid in pids/NAME.pid.
func start(dir string, sp procSpec) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "logs", sp.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	path, args := sp.path, sp.args
	if sp.netns != "" {
		path, args = "ip", append([]string{"netns", "exec", sp.netns, sp.path}, sp.args...)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), sp.env...), labEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: starting %s: %w", sp.name, err)
	}
	if err := os.WriteFile(pidFile(dir, sp.name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("lab: %w", err)
	}
	p := &proc{name: sp.name, cluster: sp.cluster, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func pidFile(dir, name string) string { return filepath.Join(dir, "pids", name+".pid") }

// exited reports whether the process ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits; it removes the pid file.
func (p *proc) stop(dir string, grace time.Duration) {
	pg := -p.cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(pg, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(pg, syscall.SIGKILL) // anything of the group left behind
	_ = os.Remove(pidFile(dir, p.name))
}

// signalGroup sends sig to a process group.
func (p *proc) signalGroup(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// ours reports whether pid is alive and was started by the lab in dir.
func ours(pid int, dir string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(append([]byte{0}, env...), []byte("\x00"+labEnv+"="+dir+"\x00"))
}

// alive reports whether pid names a live process.
func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// readPid reads a pid file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("lab: %s: %w", path, err)
	}
	return pid, nil
}

// killLeftovers stops, by pid file, every process a crashed lab in dir
// left running: SIGTERM to its group, SIGKILL to the stragglers after
// grace. A stopped (SIGSTOP) process is continued so that it can exit.
// It returns the names it stopped.
func killLeftovers(ctx context.Context, dir string, grace time.Duration) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	var pids []int
	var names []string
	for _, f := range files {
		pid, err := readPid(f)
		if err == nil && ours(pid, dir) {
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			_ = syscall.Kill(-pid, syscall.SIGCONT)
			pids = append(pids, pid)
			names = append(names, strings.TrimSuffix(filepath.Base(f), ".pid"))
		}
		_ = os.Remove(f)
	}
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return names
}
