package listen

import (
	"bufio"
	"net"
)

// peekConn lets the listener filters look at a connection's first bytes
// without consuming them: later reads return them first.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func newPeekConn(c net.Conn) *peekConn {
	return &peekConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
}

// Peek returns the next n bytes without consuming them; fewer with an
// error when the connection ends or its deadline passes first. n may
// exceed the buffer: a larger reader is stacked on the old one, which
// hands over what it holds before reading on.
func (p *peekConn) Peek(n int) ([]byte, error) {
	if n > p.r.Size() {
		p.r = bufio.NewReaderSize(p.r, n)
	}
	return p.r.Peek(n)
}

func (p *peekConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// CloseWrite passes a half-close through, when the connection has one.
func (p *peekConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}
