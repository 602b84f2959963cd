package hello

import (
	"encoding/binary"
	"errors"
)

// Hello is what the TLS inspector reads from a ClientHello.
type Hello struct {
	SNI  string
	ALPN []string
}

// ErrNeedMore says the bytes so far end inside the ClientHello.
var ErrNeedMore = errors.New("hello: incomplete ClientHello")

// MaxBytes bounds how far the inspector reads: a larger ClientHello
// is refused as abuse.
const MaxBytes = 64 << 10

// Parse reads the SNI and ALPN of a ClientHello at the start of
// b (TLS records, possibly several). It returns ErrNeedMore when b ends
// before the handshake message does, and another error when the bytes are
// not a ClientHello. It never reads past b and never panics on any input
// (see FuzzParse).
func Parse(b []byte) (Hello, error) {
	// Reassemble the handshake message from its records.
	var msg []byte
	for {
		if len(b) < 5 {
			return Hello{}, ErrNeedMore
		}
		if b[0] != 0x16 {
			return Hello{}, errors.New("hello: not a TLS handshake record")
		}
		if b[1] != 3 {
			return Hello{}, errors.New("hello: unknown TLS record version")
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if n == 0 || n > 1<<14+256 {
			return Hello{}, errors.New("hello: bad TLS record length")
		}
		if len(b) < 5+n {
			return Hello{}, ErrNeedMore
		}
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
		if len(msg) >= 4 {
			if msg[0] != 1 {
				return Hello{}, errors.New("hello: first handshake message is not a ClientHello")
			}
			total := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if total > MaxBytes {
				return Hello{}, errors.New("hello: ClientHello too large")
			}
			if len(msg) >= total {
				return parseHelloBody(msg[4:total])
			}
		}
		if len(msg) > MaxBytes {
			return Hello{}, errors.New("hello: ClientHello too large")
		}
	}
}

// reader is a bounds-checked cursor.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

func parseHelloBody(body []byte) (Hello, error) {
	var h Hello
	r := &reader{b: body}
	r.bytes(2)       // legacy version
	r.bytes(32)      // random
	r.bytes(r.u8())  // session id
	r.bytes(r.u16()) // cipher suites
	r.bytes(r.u8())  // compression methods
	if r.bad {
		return h, errors.New("hello: truncated ClientHello")
	}
	if len(r.b) == 0 {
		return h, nil // no extensions
	}
	exts := &reader{b: r.bytes(r.u16())}
	if r.bad {
		return h, errors.New("hello: truncated ClientHello extensions")
	}
	for len(exts.b) > 0 && !exts.bad {
		typ := exts.u16()
		data := &reader{b: exts.bytes(exts.u16())}
		if exts.bad {
			break
		}
		switch typ {
		case 0: // server_name
			list := &reader{b: data.bytes(data.u16())}
			for len(list.b) > 0 && !list.bad {
				kind := list.u8()
				name := list.bytes(list.u16())
				if kind == 0 && !list.bad && h.SNI == "" {
					if !validSNI(name) {
						return Hello{}, errors.New("hello: malformed server name")
					}
					h.SNI = string(name)
				}
			}
		case 16: // application_layer_protocol_negotiation
			list := &reader{b: data.bytes(data.u16())}
			for len(list.b) > 0 && !list.bad {
				p := list.bytes(list.u8())
				if !list.bad && len(p) > 0 && len(h.ALPN) < 16 {
					h.ALPN = append(h.ALPN, string(p))
				}
			}
		}
	}
	if exts.bad {
		return Hello{}, errors.New("hello: truncated ClientHello extension")
	}
	return h, nil
}

// validSNI accepts host names only: printable ASCII without spaces, no
// trailing dot, at most 255 bytes.
func validSNI(b []byte) bool {
	if len(b) == 0 || len(b) > 255 || b[len(b)-1] == '.' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
