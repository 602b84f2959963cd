package federation

import (
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport counts the bytes gossip sends and receives on the
// wire (after encryption and compression), for the bytes metrics and the
// "bytes per change" benchmark. It forwards memberlist's packet and stream
// channels through two goroutines it owns; Shutdown stops them.
type countingTransport struct {
	memberlist.NodeAwareTransport
	count   func(direction string, n int)
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newCountingTransport(inner memberlist.NodeAwareTransport, count func(direction string, n int)) *countingTransport {
	t := &countingTransport{
		NodeAwareTransport: inner, count: count,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), stop: make(chan struct{}),
	}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case p := <-inner.PacketCh():
				t.count("received", len(p.Buf))
				select {
				case t.packets <- p:
				case <-t.stop:
					return
				}
			case <-t.stop:
				return
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			select {
			case c := <-inner.StreamCh():
				select {
				case t.streams <- &countingConn{Conn: c, count: count}:
				case <-t.stop:
					c.Close()
					return
				}
			case <-t.stop:
				return
			}
		}
	}()
	return t
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.count("sent", len(b))
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.count("sent", len(b))
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, count: t.count}, nil
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, count: t.count}, nil
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *countingTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *countingTransport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.once.Do(func() { close(t.stop) })
	t.wg.Wait()
	return err
}

// countingConn counts the bytes of one connection.
type countingConn struct {
	net.Conn
	count func(direction string, n int)
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.count("received", n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.count("sent", n)
	return n, err
}

// countingListener counts the bytes of every accepted connection.
type countingListener struct {
	net.Listener
	count func(direction string, n int)
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, count: l.count}, nil
}
