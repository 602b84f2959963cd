//go:build race && linux

package sockio

import (
	"runtime"
	"unsafe"
)

// ioSync stands in for the kernel: what a write sent happens before what
// a read received, as package syscall tells the race detector.
var ioSync int64

func raceRead(p []byte) {
	if len(p) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), len(p))
	}
	runtime.RaceAcquire(unsafe.Pointer(&ioSync))
}

func raceWrite(p []byte) {
	if len(p) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&p[0]), len(p))
	}
	runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync))
}
