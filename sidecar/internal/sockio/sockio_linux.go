package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose reads and writes are made as raw system
// calls. Everything else (deadlines, half-close, addresses, options) is
// the embedded *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu, wmu        sync.Mutex // one Read and one Write at a time, as the fd's own locks
	r, w            op
	doRead, doWrite func(uintptr) bool
}

// op is one Read's or Write's state, kept on the Conn so the functions
// handed to RawConn are built once per connection, not per call.
type op struct {
	buf []byte
	n   int
	err syscall.Errno
}

// Wrap returns c with raw reads and writes when it is a *net.TCPConn, and
// c unchanged otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{TCPConn: tc, rc: rc}
	s.doRead, s.doWrite = s.read, s.write
	return s
}

// read is called with the read lock of the fd held: false means the
// socket has nothing to read yet and the caller waits in the poller.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(c.r.buf))), uintptr(len(c.r.buf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			c.r.n = int(n)
			raceRead(c.r.buf[:n])
		}
		c.r.err = e
		return true
	}
}

func (c *Conn) write(fd uintptr) bool {
	raceWrite(c.w.buf[c.w.n:])
	for c.w.n < len(c.w.buf) {
		p := c.w.buf[c.w.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			c.w.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.w.err = e
			return true
		}
	}
	return true
}

// maxRW bounds one system call, as the runtime's poller does.
const maxRW = 1 << 30

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.r = op{buf: p}
	err := c.rc.Read(c.doRead)
	n, e := c.r.n, c.r.err
	c.r = op{}
	if err := c.opError("read", err, e); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w = op{buf: p}
	err := c.rc.Write(c.doWrite)
	n, e := c.w.n, c.w.err
	c.w = op{}
	return n, c.opError("write", err, e)
}

// opError gives a call's failure the shape net.TCPConn's have, nil for
// none: err is RawConn's (deadline, closed), a *net.OpError for the op
// "raw-read" or "raw-write"; e is the system call's.
func (c *Conn) opError(op string, err error, e syscall.Errno) error {
	switch {
	case err != nil:
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
	case e != 0:
		err = os.NewSyscallError(op, e)
	default:
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
