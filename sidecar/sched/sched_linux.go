package sched

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// SetSlice requests slice d for every thread of the process, 0 for the
// kernel's default. Threads the runtime starts later inherit it from the
// thread that starts them. It returns how many threads were set.
func SetSlice(d time.Duration) (int, error) {
	if err := Check(d); err != nil {
		return 0, err
	}
	done := map[int]bool{}
	// A thread started while the list is read may have been cloned from
	// one not yet set: read it again until nothing is new.
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return len(done), err
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			attr := unix.SchedAttr{Policy: unix.SCHED_NORMAL, Runtime: uint64(d)}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && err != unix.ESRCH {
				return len(done), fmt.Errorf("sched_setattr thread %d: %w", tid, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return len(done), nil
		}
	}
}
