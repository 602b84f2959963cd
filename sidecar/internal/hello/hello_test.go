package hello

import (
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"
)

// clientHello captures the first flight a real crypto/tls client sends.
func clientHello(t testing.TB, sni string, alpn ...string) []byte {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan []byte)
	go func() {
		buf := make([]byte, 64<<10)
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := s.Read(buf)
		s.Close()
		done <- buf[:n]
	}()
	// X25519 alone keeps the hello small (no post-quantum key share): a
	// small seed keeps the fuzzer quick.
	go tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: sni == "", CurvePreferences: []tls.CurveID{tls.X25519}}).Handshake()
	b := <-done
	c.Close()
	return b
}

func TestParseClientHello(t *testing.T) {
	b := clientHello(t, "outbound_.80_._.echo.shop.svc.cluster.local", "h2", "http/1.1")
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.SNI != "outbound_.80_._.echo.shop.svc.cluster.local" || !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) {
		t.Fatalf("hello = %+v", h)
	}
	// Every truncation asks for more; none is misread.
	for i := 0; i < len(b); i++ {
		if _, err := Parse(b[:i]); err != ErrNeedMore {
			t.Fatalf("truncated at %d: %v, want ErrNeedMore", i, err)
		}
	}
	// The same hello split over two records.
	body := b[5:]
	half := len(body) / 2
	split := append([]byte{0x16, 3, 1, byte(half >> 8), byte(half)}, body[:half]...)
	rest := len(body) - half
	split = append(split, 0x16, 3, 1, byte(rest>>8), byte(rest))
	split = append(split, body[half:]...)
	if h2, err := Parse(split); err != nil || h2.SNI != h.SNI {
		t.Fatalf("split over records: %+v %v", h2, err)
	}
	for _, bad := range [][]byte{{0x17, 3, 3, 0, 1, 0}, {0x16, 3, 3, 0, 0}, {0x16, 3, 3, 0, 4, 2, 0, 0, 0}, []byte("GET / HTTP/1.1\r\n")} {
		if _, err := Parse(bad); err == nil || err == ErrNeedMore {
			t.Errorf("%q: %v, want a refusal", bad, err)
		}
	}
}

// FuzzParse: any bytes give a result, ErrNeedMore or an error;
// never a panic, never an out-of-range read. Real ClientHellos of
// crypto/tls are the seeds in testdata/fuzz.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err == nil && len(h.SNI) > 255 {
			t.Fatalf("SNI of %d bytes accepted", len(h.SNI))
		}
	})
}
